using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.OpenApi;

/// <summary>Marks routes that need <c>Authorization: Bearer &lt;admin key&gt;</c>; <see cref="AdminBearerFilter"/> declares it.</summary>
public sealed class AdminBearer
{
    public const string Scheme = "adminBearer";

    /// <summary>The scheme Swagger UI's "Authorize" button fills in.</summary>
    public static OpenApiSecurityScheme Definition() =>
        BearerScheme.Definition("The admin key whose SHA-256 is Admin:ApiKeySha256 (the /v1/admin routes exist only when it is set).");
}

/// <summary>Adds the admin bearer requirement to every operation marked <see cref="AdminBearer"/>, and only to those,
/// so "Try it out" sends the key where it is needed and nowhere else.</summary>
public sealed class AdminBearerFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context) =>
        BearerScheme.RequireWhereMarked<AdminBearer>(operation, context, AdminBearer.Scheme);
}

/// <summary>Drops the admin scheme from the document when no operation requires it: without an admin key the
/// /v1/admin routes are not mapped, and Swagger UI would otherwise show an "Authorize" button that unlocks nothing.</summary>
public sealed class UnusedAdminBearerFilter : IDocumentFilter
{
    public void Apply(OpenApiDocument document, DocumentFilterContext context)
    {
        bool used = document.Paths.Values
            .SelectMany(path => path.Operations?.Values ?? Enumerable.Empty<OpenApiOperation>())
            .Any(operation => operation.Security?.Any(requirement => requirement.Keys.Any(s => s.Reference?.Id == AdminBearer.Scheme)) == true);
        if (!used) document.Components?.SecuritySchemes?.Remove(AdminBearer.Scheme);
    }
}
