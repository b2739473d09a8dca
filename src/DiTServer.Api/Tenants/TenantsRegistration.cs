namespace DiTServer.Api.Tenants;

public static class TenantsRegistration
{
    /// <summary>The <c>Tenants</c> list (validated at start: each entry's fields, then unique names and keys) and the
    /// <c>Clients</c> keys used when there are no tenants.</summary>
    public static WebApplicationBuilder AddTenants(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ClientOptions>().BindConfiguration(ClientOptions.Section);
        builder.Services.AddOptions<List<TenantOptions>>().BindConfiguration(TenantOptions.Section)
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<List<TenantOptions>>, TenantsValidator>();
        builder.Services.AddSingleton<TenantDirectory>();
        return builder;
    }

    /// <summary>The first broken rule of the list, with the entry's index, or null.</summary>
    public static string? Validate(List<TenantOptions> tenants)
    {
        for (int i = 0; i < tenants.Count; i++)
        {
            var results = new List<System.ComponentModel.DataAnnotations.ValidationResult>();
            if (!System.ComponentModel.DataAnnotations.Validator.TryValidateObject(tenants[i], new(tenants[i]), results, validateAllProperties: true))
                return string.Join("; ", results.Select(r => r.ErrorMessage!.Replace("Tenants:N:", $"Tenants:{i}:")));
        }
        return TenantDirectory.Check(tenants);
    }

    private sealed class TenantsValidator : IValidateOptions<List<TenantOptions>>
    {
        public ValidateOptionsResult Validate(string? name, List<TenantOptions> options) =>
            TenantsRegistration.Validate(options) is { } failure ? ValidateOptionsResult.Fail(failure) : ValidateOptionsResult.Success;
    }
}
