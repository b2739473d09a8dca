namespace DiTServer.Api.Http;

/// <summary>What an endpoint's JSON body looks like, for the OpenAPI document only.</summary>
/// <remarks>Our handlers read their bodies themselves (one parser gives every field its own message), so the framework
/// cannot infer a body. <c>Accepts&lt;T&gt;</c> would document it but also makes routing answer a bare 415 before the
/// handler can explain, so the type travels as plain metadata instead.</remarks>
/// <param name="Examples">More named examples beside <paramref name="Example"/> (Swagger UI's example menu), e.g. one
/// per sampler.</param>
/// <param name="MediaType">application/json, or multipart/form-data for an upload (whose files <paramref name="Type"/>
/// declares as <see cref="IFormFile"/>).</param>
public sealed record DocumentedBody(Type Type, string Example, string Description, bool Required = true,
    IReadOnlyList<(string Name, string Summary, string Json)>? Examples = null, string MediaType = "application/json");

public static class DocumentedBodyExtensions
{
    /// <summary>Documents the JSON body as <typeparamref name="T"/> with an example that "Try it out" sends as is.</summary>
    public static RouteHandlerBuilder WithJsonBody<T>(this RouteHandlerBuilder route, string example, string description, bool required = true,
        IReadOnlyList<(string Name, string Summary, string Json)>? examples = null) =>
        route.WithMetadata(new DocumentedBody(typeof(T), example, description, required, examples));

    /// <summary>Documents a multipart/form-data upload as <typeparamref name="T"/> (files as <see cref="IFormFile"/>) with
    /// an example of its text fields.</summary>
    public static RouteHandlerBuilder WithFormBody<T>(this RouteHandlerBuilder route, string example, string description) =>
        route.WithMetadata(new DocumentedBody(typeof(T), example, description, MediaType: "multipart/form-data"));
}
