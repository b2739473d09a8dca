using System.Reflection;
using System.Text.Json.Nodes;
using DiTServer.Api.Endpoints;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.OpenApi;

/// <summary>The served defaults (<see cref="ModelsEndpoints.ServedDefault"/>) in the OpenAPI document: the descriptions
/// of the <c>sampler</c> and <c>steps</c> fields name them, and the main example of every body with those fields uses
/// them (<see cref="InExample"/>), so Swagger shows what a request without them gets instead of a value written twice.</summary>
/// <remarks>The <c>cache_interval</c> description names the served model's cache default (<c>default_cache</c> of its
/// model.json, as <c>GET /v1/models</c> lists it), or that it has none.</remarks>
public sealed class ServedDefaultsSchemaFilter(LoadedModel model) : ISchemaFilter
{
    public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
    {
        if (context.MemberInfo is not PropertyInfo { } property || schema is not OpenApiSchema s
            || !HasSamplerAndSteps(property.DeclaringType!))
            return;
        var name = WireJson.NameOf(property);
        var (sampler, steps) = ModelsEndpoints.ServedDefault;
        if (name == "sampler") s.Description += $" (this server: {sampler})";
        else if (name == "steps") s.Description += $" (this server: {steps} with its default sampler, {sampler})";
        else if (name == "cache_interval")
            s.Description += model.Manifest.DefaultCache is { } d
                ? $" (this server, when absent: {d.Describe()}; 1 otherwise)"
                : " (this server, when absent: 1 for every sampler)";
    }

    /// <summary>The example with <c>sampler</c> and <c>steps</c> set to the served defaults when <paramref name="body"/>
    /// has both fields; other examples (one per sampler) keep their own.</summary>
    public static JsonNode? InExample(JsonNode? example, Type body)
    {
        if (example is JsonObject o && HasSamplerAndSteps(body))
        {
            var (sampler, steps) = ModelsEndpoints.ServedDefault;
            o["sampler"] = sampler;
            o["steps"] = steps;
        }
        return example;
    }

    private static bool HasSamplerAndSteps(Type type)
    {
        var names = type.GetProperties().Select(WireJson.NameOf).ToHashSet();
        return names.Contains("sampler") && names.Contains("steps");
    }
}
