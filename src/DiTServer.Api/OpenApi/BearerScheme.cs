using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.OpenApi;

/// <summary>An HTTP bearer security scheme and its requirement on the operations whose endpoint carries a marker: the
/// admin key and the tenant key are declared the same way, so they share this code.</summary>
public static class BearerScheme
{
    /// <summary>The scheme Swagger UI's "Authorize" button fills in.</summary>
    public static OpenApiSecurityScheme Definition(string description) => new()
    {
        Type = SecuritySchemeType.Http,
        Scheme = "bearer",
        Description = description,
    };

    /// <summary>Requires <paramref name="scheme"/> on the operation when its endpoint carries a
    /// <typeparamref name="TMarker"/>, so "Try it out" sends the key where it is needed and nowhere else.</summary>
    public static void RequireWhereMarked<TMarker>(OpenApiOperation operation, OperationFilterContext context, string scheme)
    {
        if (!context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<TMarker>().Any()) return;
        operation.Security ??= [];
        operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(scheme, context.Document)] = [] });
    }
}
