namespace DiTServer.Api.Tenants;

/// <summary>With tenants configured, a generation or job route answers 401 (problem+json, or OpenAI's error object on
/// the OpenAI-style routes, whose filter wraps this one) unless the request carries a tenant's key. Without tenants it
/// lets everything through: the server stays open and a client is its remote address.</summary>
public static class TenantAuthorization
{
    public static RouteHandlerBuilder RequireTenant(this RouteHandlerBuilder route) =>
        route.AddEndpointFilter(Filter).WithMetadata(TenantRequired.Marker);

    public static RouteGroupBuilder RequireTenant(this RouteGroupBuilder group) =>
        group.AddEndpointFilter(Filter).WithMetadata(TenantRequired.Marker);

    private static async ValueTask<object?> Filter(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (http.RequestServices.GetRequiredService<TenantDirectory>() is not { Enabled: true } || ClientIdentity.Of(http).Tenant is not null)
            return await next(context);
        http.Response.Headers.WWWAuthenticate = "Bearer";
        return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized",
            detail: "this server has tenants: send 'Authorization: Bearer <your tenant key>'");
    }
}
