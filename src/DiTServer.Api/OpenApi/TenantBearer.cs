using DiTServer.Api.Tenants;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.OpenApi;

/// <summary>The tenant key's security scheme, declared by <see cref="TenantBearerFilter"/> on the routes marked
/// <see cref="TenantRequired"/>.</summary>
public static class TenantBearer
{
    public const string Scheme = "tenantBearer";

    /// <summary>The scheme Swagger UI's "Authorize" button fills in.</summary>
    public static OpenApiSecurityScheme Definition() => BearerScheme.Definition(
        "A tenant's key, whose SHA-256 is Tenants:N:ApiKeySha256: the generation and job routes need it while tenants are configured.");
}

/// <summary>With tenants configured, declares <see cref="TenantBearer.Scheme"/> and requires it on every operation marked
/// <see cref="TenantRequired"/>, so "Authorize" offers the tenant key and "Try it out" sends it there. Without tenants the
/// server is open and the document says nothing of tenant keys.</summary>
public sealed class TenantBearerFilter(TenantDirectory tenants) : IOperationFilter, IDocumentFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (tenants.Enabled) BearerScheme.RequireWhereMarked<TenantRequired>(operation, context, TenantBearer.Scheme);
    }

    public void Apply(OpenApiDocument document, DocumentFilterContext context)
    {
        if (!tenants.Enabled) return;
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[TenantBearer.Scheme] = TenantBearer.Definition();
    }
}
