using System.Text.Json.Nodes;
using DiTServer.Api.Endpoints;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.OpenApi;

/// <summary>Turns <see cref="DocumentedBody"/> into the operation's request body (schema and example), and lists both
/// 200 representations of <c>POST /v1/images</c> (PNG bytes and JSON).</summary>
public sealed class RequestBodyFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<DocumentedBody>().LastOrDefault() is { } body)
        {
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = body.Required,
                Description = body.Description,
                Content = new Dictionary<string, IOpenApiMediaType>
                {
                    [body.MediaType] = new OpenApiMediaType
                    {
                        Schema = context.SchemaGenerator.GenerateSchema(body.Type, context.SchemaRepository),
                        Example = ServedDefaultsSchemaFilter.InExample(JsonNode.Parse(body.Example), body.Type),
                        Examples = body.Examples is { Count: > 0 } more
                            ? more.ToDictionary(e => e.Name, e => (IOpenApiExample)new OpenApiExample { Summary = e.Summary, Value = JsonNode.Parse(e.Json) })
                            : null,
                    },
                },
            };
        }
        if (operation.OperationId == ImagesEndpoints.GenerateName
            && operation.Responses?.TryGetValue("200", out var ok) == true && ok is OpenApiResponse response)
        {
            response.Description = "Accept: image/png (default) → one PNG (a grid of 4 per row for num_images > 1), headers X-Seed and X-Class-Label; " +
                "Accept: application/json → every image as its own base64 PNG.";
            response.Content ??= new Dictionary<string, IOpenApiMediaType>();
            response.Content["image/png"] = new OpenApiMediaType { Schema = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" } };
        }
    }
}
