using Microsoft.OpenApi;

namespace DiTServer.Api.OpenApi;

/// <summary>The OpenAPI document and Swagger UI at <c>/swagger</c>. Above the endpoints: its filters read their request
/// records and the served defaults, while the endpoints only attach plain metadata (<see cref="Http.DocumentedBody"/>).</summary>
public static class OpenApiRegistration
{
    public static WebApplicationBuilder AddServerOpenApi(this WebApplicationBuilder builder)
    {
        builder.Services.AddEndpointsApiExplorer();
        builder.Services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "DiTServer",
                Version = "v1",
                Description = "Class-conditional image generation with a Diffusion Transformer, batched per denoising step.",
            });
            c.OperationFilter<RequestBodyFilter>();
            c.SchemaFilter<ClassLabelSchemaFilter>();
            c.SchemaFilter<ServedDefaultsSchemaFilter>();
            c.AddSecurityDefinition(AdminBearer.Scheme, AdminBearer.Definition());
            c.OperationFilter<AdminBearerFilter>();
            c.DocumentFilter<UnusedAdminBearerFilter>();
            c.OperationFilter<TenantBearerFilter>(); // both only while tenants are configured
            c.DocumentFilter<TenantBearerFilter>();
        });
        return builder;
    }

    public static WebApplication UseServerOpenApi(this WebApplication app)
    {
        app.UseSwagger();
        app.UseSwaggerUI(o => o.UseRequestInterceptor(SwaggerAccept.Interceptor)); // /swagger
        return app;
    }
}
