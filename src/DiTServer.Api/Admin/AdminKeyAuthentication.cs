using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;

namespace DiTServer.Api.Admin;

/// <summary>ASP.NET authentication for the admin key: <c>Authorization: Bearer &lt;key&gt;</c> whose SHA-256 is
/// <c>Admin:ApiKeySha256</c> signs the request in as the admin; anything else is challenged with a 401 problem.</summary>
/// <remarks>The admin routes require the <see cref="Policy"/> policy, so the framework's authorization does the gate
/// and OpenAPI declares the scheme (<see cref="OpenApi.AdminBearer"/>); <see cref="AdminKey"/> keeps the hash check.</remarks>
public sealed class AdminKeyAuthentication(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    IOptions<AdminOptions> admin) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "AdminKey";
    public const string Policy = "Admin";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        AdminKey? key;
        try { key = AdminKey.FromConfiguredHash(admin.Value.ApiKeySha256); }
        catch (ArgumentException) { key = null; } // reported by options validation at start
        if (key is null || !Request.Headers.ContainsKey("Authorization")) return Task.FromResult(AuthenticateResult.NoResult());
        if (!key.Accepts(Request.Headers.Authorization)) return Task.FromResult(AuthenticateResult.Fail("wrong admin key"));
        var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "admin"), new Claim(ClaimTypes.Role, "admin")], SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    /// <summary>The same answer for a missing and a wrong key: 401 problem+json with <c>WWW-Authenticate: Bearer</c>.</summary>
    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        return Results.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized",
            detail: "this route needs 'Authorization: Bearer <admin key>'").ExecuteAsync(Context);
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) => HandleChallengeAsync(properties);
}
