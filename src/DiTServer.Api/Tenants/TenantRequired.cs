namespace DiTServer.Api.Tenants;

/// <summary>Endpoint metadata on the routes that need a tenant's key while tenants are configured
/// (<see cref="TenantAuthorization.RequireTenant(RouteHandlerBuilder)"/> adds it): the OpenAPI document reads it to
/// declare the tenant bearer scheme there, without this folder knowing of Swagger.</summary>
public sealed class TenantRequired
{
    public static TenantRequired Marker { get; } = new();
}
