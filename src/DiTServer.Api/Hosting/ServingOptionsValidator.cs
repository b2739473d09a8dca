using DiTServer.Core.Serving;
using Microsoft.Extensions.Options;

namespace DiTServer.Api.Hosting;

/// <summary>The cross-field rules of <see cref="ServingOptions"/> that data annotations cannot express.</summary>
public sealed class ServingOptionsValidator : IValidateOptions<ServingOptions>
{
    public ValidateOptionsResult Validate(string? name, ServingOptions options) =>
        options.Check() is { } error ? ValidateOptionsResult.Fail(error) : ValidateOptionsResult.Success;
}
