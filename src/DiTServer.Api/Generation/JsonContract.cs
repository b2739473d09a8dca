using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace DiTServer.Api.Generation;

/// <summary>How one endpoint words the mistakes of a body as a whole (the per-field ones are its validator's).</summary>
/// <param name="Empty">The answer to an empty body.</param>
/// <param name="NotAnObject">The answer to JSON that is not an object, given what it is.</param>
public sealed record BodyWording(string Empty, Func<JsonValueKind, string> NotAnObject);

/// <summary>The options every request record is read with: unknown and repeated fields refused, at most 8 levels deep,
/// numbers only as JSON numbers.</summary>
public static class JsonContract
{
    public const string NotUtf8 = "the body is not valid UTF-8; send JSON encoded as UTF-8";

    public static readonly JsonSerializerOptions Options = Create();

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions
        {
            PropertyNamingPolicy = WireJson.Names,
            UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
            AllowDuplicateProperties = false,
            MaxDepth = 8,
            NumberHandling = JsonNumberHandling.Strict,
            TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
        };
        options.MakeReadOnly();
        return options;
    }

    internal static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 8 };

    /// <summary>The body without a leading UTF-8 byte order mark (EF BB BF), which some Windows tools write before JSON
    /// (PowerShell 5's <c>Out-File</c>, Notepad's "UTF-8 with BOM"). RFC 8259 §8.1 lets a parser ignore it;
    /// System.Text.Json's span reader does not, so every JSON route strips it first.</summary>
    public static ReadOnlyMemory<byte> WithoutBom(ReadOnlyMemory<byte> body) =>
        body.Span.StartsWith("\uFEFF"u8) ? body[3..] : body;
}

/// <summary>A request body read as the record <typeparamref name="T"/>, which is the contract: its properties are the
/// fields (names, types, and through their attributes the OpenAPI schema), and a <see cref="BodyValidator{T}"/> checks
/// the values.</summary>
/// <remarks>A valid body costs one <see cref="JsonSerializer.Deserialize{TValue}(ReadOnlySpan{byte}, JsonSerializerOptions?)"/>.
/// When that throws, a second, diagnostic pass explains the body: System.Text.Json stops at the first mistake and words
/// it for .NET developers ("could not be converted to System.Nullable`1[System.Int32]"), but our clients get every
/// mistaken field at once, in our words. The pass lists unknown and repeated fields, reads each known field's value
/// alone into its property's type to find the ones of the wrong type, and hands back a record of the fields that did
/// read, so the validator still reports range and cross-field mistakes beside the type errors.</remarks>
public static class JsonContract<T> where T : class
{
    private static readonly JsonTypeInfo Info = JsonContract.Options.GetTypeInfo(typeof(T));
    private static readonly Dictionary<string, JsonPropertyInfo> Properties = Info.Properties.ToDictionary(p => p.Name);
    private static readonly ConcurrentDictionary<JsonPropertyInfo, JsonSerializerOptions> ConverterOptions = new();

    /// <summary>The body's field names, in the record's order.</summary>
    public static readonly IReadOnlyList<string> Fields = [.. Info.Properties.Select(p => p.Name)];

    public static bool IsField(string name) => Properties.ContainsKey(name);

    /// <summary>The JSON name of the record property that <paramref name="property"/> reads.</summary>
    public static string NameOf<TProperty>(Expression<Func<T, TProperty>> property)
    {
        var member = ((MemberExpression)property.Body).Member;
        return Info.Properties.Single(p => p.AttributeProvider is MemberInfo m && m.Name == member.Name).Name;
    }

    /// <summary>Reads <paramref name="body"/>.</summary>
    /// <param name="errors">Gets the mistakes of the body as a whole ("body") and its unknown and repeated fields.</param>
    /// <param name="fields">The body's fields as sent, for the validator.</param>
    /// <returns>The record (on a mistaken body, with the fields that could be read), or null when the body is no JSON object.</returns>
    public static T? Read(ReadOnlyMemory<byte> body, BodyWording wording, Dictionary<string, string[]> errors, out JsonFields fields)
    {
        body = JsonContract.WithoutBom(body);
        if (System.Text.Unicode.Utf8.IsValid(body.Span))
        {
            try
            {
                if (JsonSerializer.Deserialize(body.Span, Info) is T record)
                {
                    fields = JsonFields.Later(body);
                    return record;
                }
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException)
            {
                // Explained below.
            }
        }
        return Explain(body, wording, errors, out fields);
    }

    /// <summary>The diagnostic pass (see the remarks on this class).</summary>
    private static T? Explain(ReadOnlyMemory<byte> body, BodyWording wording, Dictionary<string, string[]> errors, out JsonFields fields)
    {
        fields = JsonFields.Empty;
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(body, JsonContract.DocumentOptions);
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            errors["body"] = [body.Length == 0 ? wording.Empty : $"malformed JSON: {e.Message}"];
            return null;
        }
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
        {
            errors["body"] = [JsonContract.NotUtf8];
            return null;
        }
        if (root.ValueKind != JsonValueKind.Object)
        {
            errors["body"] = [wording.NotAnObject(root.ValueKind)];
            return null;
        }
        try
        {
            return ExplainObject(root, errors, out fields);
        }
        catch (InvalidOperationException e)
        {
            // A field name or a text field holding an escaped lone surrogate ("\ud800"): valid JSON syntax, but not text.
            errors.Clear();
            errors["body"] = [$"the body holds a string that is not valid Unicode text: {e.Message}"];
            return null;
        }
    }

    private static T ExplainObject(JsonElement root, Dictionary<string, string[]> errors, out JsonFields fields)
    {
        var values = new Dictionary<string, JsonElement>();
        var repeated = new HashSet<string>();
        bool unknown = false;
        foreach (var p in root.EnumerateObject())
        {
            if (!Properties.ContainsKey(p.Name))
            {
                unknown = true;
                errors.AddError(p.Name, $"unknown field '{p.Name}'; the fields are {string.Join(", ", Fields)}");
            }
            else if (!values.TryAdd(p.Name, p.Value))
            {
                repeated.Add(p.Name);
                errors.AddError(p.Name, $"field '{p.Name}' appears more than once");
            }
        }
        var record = (T)Info.CreateObject!();
        var unreadable = new HashSet<string>();
        foreach (var (name, value) in values)
        {
            var property = Properties[name];
            try
            {
                property.Set!(record, value.Deserialize(property.PropertyType, OptionsFor(property)));
            }
            catch (JsonException)
            {
                // A text field takes any string but one that is not text: GetString throws the InvalidOperationException for that.
                if (value.ValueKind == JsonValueKind.String && property.PropertyType == typeof(string)) value.GetString();
                unreadable.Add(name);
            }
        }
        fields = new JsonFields(values, unreadable, repeated, unknown);
        return record;
    }

    /// <summary>The options with the property's own converter (a property's [JsonConverter]), to read its value alone.</summary>
    private static JsonSerializerOptions OptionsFor(JsonPropertyInfo property) => property.CustomConverter is not { } converter
        ? JsonContract.Options
        : ConverterOptions.GetOrAdd(property, _ =>
        {
            var options = new JsonSerializerOptions(JsonContract.Options) { Converters = { converter } };
            options.MakeReadOnly();
            return options;
        });
}

/// <summary>A body's top-level fields as sent: which appeared (null included), which could not be read into their
/// property's type, which were repeated, and each one's JSON text. Validators ask it what the typed record cannot say.</summary>
public sealed class JsonFields
{
    internal static readonly JsonFields Empty = new(new Dictionary<string, JsonElement>(), new HashSet<string>(), new HashSet<string>(), false);

    private readonly Lazy<IReadOnlyDictionary<string, JsonElement>> values;
    private readonly IReadOnlySet<string> unreadable, repeated;
    private readonly bool unknown;
    private readonly Func<string, string> rename;

    internal JsonFields(IReadOnlyDictionary<string, JsonElement> values, IReadOnlySet<string> unreadable, IReadOnlySet<string> repeated, bool unknown)
        : this(new Lazy<IReadOnlyDictionary<string, JsonElement>>(values), unreadable, repeated, unknown, name => name)
    {
    }

    private JsonFields(Lazy<IReadOnlyDictionary<string, JsonElement>> values, IReadOnlySet<string> unreadable, IReadOnlySet<string> repeated,
        bool unknown, Func<string, string> rename)
    {
        (this.values, this.unreadable, this.repeated, this.unknown, this.rename) = (values, unreadable, repeated, unknown, rename);
    }

    /// <summary>A body that read without a mistake: its texts are looked up only when a message needs one.</summary>
    internal static JsonFields Later(ReadOnlyMemory<byte> body) => new(new Lazy<IReadOnlyDictionary<string, JsonElement>>(() =>
    {
        using var doc = JsonDocument.Parse(body, JsonContract.DocumentOptions);
        var first = new Dictionary<string, JsonElement>();
        foreach (var p in doc.RootElement.Clone().EnumerateObject()) first.TryAdd(p.Name, p.Value);
        return first;
    }), new HashSet<string>(), new HashSet<string>(), false, name => name);

    /// <summary>These fields as another record's validator sees them when an endpoint forwards its fields to it
    /// (<c>/v1/images/generations</c> to the rules of <c>/v1/images</c>): under that record's names, a repeated one as its
    /// first value.</summary>
    /// <param name="names">The forwarding body's name for a field the other record names differently.</param>
    public JsonFields Forwarded(IReadOnlyDictionary<string, string> names) =>
        new(values, unreadable, new HashSet<string>(), false, name => names.GetValueOrDefault(name, name));

    /// <summary>The field was sent with a value: null is "absent" for every optional field, as the typed record reads it.</summary>
    public bool Present(string name) =>
        values.Value.TryGetValue(rename(name), out var v) && v.ValueKind != JsonValueKind.Null;

    /// <summary>The field's value is not of its property's type; the record holds null for it.</summary>
    public bool Unreadable(string name) => unreadable.Contains(rename(name));

    /// <summary>The field was sent more than once.</summary>
    public bool Repeated(string name) => repeated.Contains(rename(name));

    /// <summary>The field has a mistake the record cannot show: of the wrong type, or repeated.</summary>
    public bool Failed(string name) => Unreadable(name) || Repeated(name);

    /// <summary>A field other than <paramref name="name"/> is unknown, repeated or of the wrong type.</summary>
    public bool FailedBesides(string name) =>
        unknown || repeated.Any(n => n != rename(name)) || unreadable.Any(n => n != rename(name));

    /// <summary>The field's (first) value as sent.</summary>
    public JsonElement Value(string name) => values.Value[rename(name)];

    /// <summary>The field's (first) value's JSON text as sent, e.g. <c>0.50</c> or <c>[600, 100]</c>.</summary>
    public string Raw(string name) => Value(name).GetRawText();
}

/// <summary>JSON values as our messages name them.</summary>
public static class JsonText
{
    /// <summary>A number or string as sent; any other value by its kind ("a boolean", "an array").</summary>
    public static string Show(JsonElement v) => v.ValueKind is JsonValueKind.Number or JsonValueKind.String ? v.GetRawText() : Describe(v.ValueKind);

    public static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
