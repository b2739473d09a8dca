using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace DiTServer.Api.Http;

/// <summary>How the fields of every JSON body are named on the wire: snake_case, from the C# property names
/// (<c>ClassLabel</c> is <c>class_label</c>). One policy for everything that writes or reads JSON (ASP.NET's results,
/// and through its options the OpenAPI schemas; the request records; server-sent events; the shared job store), so a
/// <see cref="JsonPropertyNameAttribute"/> is left only where a field's name is not its property's, and says why.</summary>
public static class WireJson
{
    public static readonly JsonNamingPolicy Names = JsonNamingPolicy.SnakeCaseLower;

    /// <summary>For JSON written outside ASP.NET's results (server-sent events, the shared job store): the serializer's
    /// defaults with our names.</summary>
    public static readonly JsonSerializerOptions Options = Create();

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions { PropertyNamingPolicy = Names, TypeInfoResolver = new DefaultJsonTypeInfoResolver() };
        options.MakeReadOnly();
        return options;
    }

    /// <summary>The JSON name of <paramref name="property"/>, for code that reads records by reflection (OpenAPI filters).</summary>
    public static string NameOf(PropertyInfo property) =>
        property.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name ?? Names.ConvertName(property.Name);

    /// <summary>The policy in ASP.NET's JSON options: minimal APIs' results read <c>Http.Json.JsonOptions</c>; Swashbuckle
    /// reads MVC's <c>JsonOptions</c> (resolvable even without MVC) before them, so both get it.</summary>
    public static WebApplicationBuilder AddWireJson(this WebApplicationBuilder builder)
    {
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.PropertyNamingPolicy = Names);
        builder.Services.Configure<Microsoft.AspNetCore.Mvc.JsonOptions>(o => o.JsonSerializerOptions.PropertyNamingPolicy = Names);
        return builder;
    }
}
