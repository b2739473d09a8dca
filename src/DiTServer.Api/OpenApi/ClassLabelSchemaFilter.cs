using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace DiTServer.Api.OpenApi;

/// <summary>Documents <c>class_label</c> as any JSON value, as the schema did before the record typed it as the text
/// <see cref="ClassLabelJson"/> reads (a class name, or an integer index read as its digits). OpenAI's <c>prompt</c>,
/// read the same way, stays a string, as OpenAI documents it.</summary>
public sealed class ClassLabelSchemaFilter : ISchemaFilter
{
    public void Apply(IOpenApiSchema schema, SchemaFilterContext context)
    {
        if (context.MemberInfo is { Name: nameof(ImageRequest.ClassLabel) } member && member.DeclaringType == typeof(ImageRequest)
            && schema is OpenApiSchema s)
            s.Type = null;
    }
}
