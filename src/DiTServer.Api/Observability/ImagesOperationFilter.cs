using System.Text.Json.Nodes;
using DiTServer.Api.Endpoints;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.Observability;

/// <summary>Documents <c>POST /v1/images</c>, whose body the handler reads itself: the request schema with an
/// example, and both 200 representations (PNG bytes and JSON).</summary>
public sealed class ImagesOperationFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        if (operation.OperationId != ImagesEndpoints.GenerateName) return;
        var requestSchema = context.SchemaGenerator.GenerateSchema(typeof(ImageRequest), context.SchemaRepository);
        operation.RequestBody = new OpenApiRequestBody
        {
            Required = true,
            Description = "What to generate. Only class_label is required.",
            Content = new Dictionary<string, IOpenApiMediaType>
            {
                ["application/json"] = new OpenApiMediaType
                {
                    Schema = requestSchema,
                    Example = JsonNode.Parse("""{"class_label": 3, "num_images": 2, "steps": 50, "cfg_scale": 4.0, "seed": 42, "sampler": "ddpm", "guidance": "official"}"""),
                    Examples = new Dictionary<string, IOpenApiExample>
                    {
                        ["ddpm"] = new OpenApiExample
                        {
                            Summary = "DDPM, 50 steps (the official sampler)",
                            Value = JsonNode.Parse("""{"class_label": 3, "num_images": 2, "steps": 50, "cfg_scale": 4.0, "seed": 42, "sampler": "ddpm", "guidance": "official"}"""),
                        },
                        ["dpmpp_2m"] = new OpenApiExample
                        {
                            Summary = "DPM-Solver++ 2M, 10 steps, logSNR spacing",
                            Value = JsonNode.Parse("""{"class_label": 3, "num_images": 2, "steps": 10, "cfg_scale": 4.0, "seed": 42, "sampler": "dpmpp_2m", "spacing": "logsnr"}"""),
                        },
                        ["unipc"] = new OpenApiExample
                        {
                            Summary = "UniPC order 3, bh1, 8 steps, guided only for model timesteps 0..700",
                            Value = JsonNode.Parse("""{"class_label": 3, "steps": 8, "cfg_scale": 4.0, "seed": 42, "sampler": "unipc", "order": 3, "unipc_variant": "bh1", "guidance_interval": [0, 700]}"""),
                        },
                    },
                },
            },
        };
        if (operation.Responses?.TryGetValue("200", out var ok) == true && ok is OpenApiResponse response)
        {
            response.Description = "Accept: image/png (default) → one PNG (a grid of 4 per row for num_images > 1), headers X-Seed and X-Class-Label; Accept: application/json → every image as its own base64 PNG.";
            response.Content ??= new Dictionary<string, IOpenApiMediaType>();
            response.Content["image/png"] = new OpenApiMediaType { Schema = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" } };
        }
    }
}
