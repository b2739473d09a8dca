using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Text.Json;
using FluentValidation;
using FluentValidation.Results;

namespace DiTServer.Api.Generation;

/// <summary>The rules of a JSON request record (<see cref="JsonContract{T}"/>): every error is keyed by its JSON field
/// name, and a field whose value was of the wrong type is told so in the field's own words, in rule order.</summary>
public abstract class BodyValidator<T> : AbstractValidator<T> where T : class
{
    private const string FieldsKey = "json-fields";

    /// <summary>One validator per key (what it is built for: the served model's limits), built once and used for every
    /// request, as FluentValidation advises (a built validator keeps no state between validations). A handful of keys at
    /// most per process; past 16 the cache starts over rather than grow.</summary>
    protected static TValidator Shared<TKey, TValidator>(ConcurrentDictionary<TKey, TValidator> cache, TKey key, Func<TKey, TValidator> create)
        where TKey : notnull
    {
        if (cache.TryGetValue(key, out var validator)) return validator;
        if (cache.Count >= 16) cache.Clear();
        return cache.GetOrAdd(key, create);
    }

    /// <summary>The body's fields as sent, for what the typed record cannot say (a field sent as null, a value's text).</summary>
    protected static JsonFields Fields(IValidationContext context) => (JsonFields)context.RootContextData[FieldsKey];

    /// <summary>Checks <paramref name="record"/> as read from a body with these <paramref name="fields"/>.</summary>
    public ValidationResult Validate(T record, JsonFields fields)
    {
        var context = new ValidationContext<T>(record);
        context.RootContextData[FieldsKey] = fields;
        return Validate(context);
    }

    /// <summary>Starts the rules of one field: keyed by its JSON name, first telling why its value could not be read
    /// (<paramref name="unreadable"/>, given the value) when it could not; the record then holds null for it.</summary>
    protected IRuleBuilderOptions<T, TProperty> Field<TProperty>(Expression<Func<T, TProperty>> property, Func<JsonElement, string> unreadable) =>
        Field(property, (_, v, _) => unreadable(v));

    /// <inheritdoc cref="Field{TProperty}(Expression{Func{T, TProperty}}, Func{JsonElement, string})"/>
    protected IRuleBuilderOptions<T, TProperty> Field<TProperty>(Expression<Func<T, TProperty>> property,
        Func<T, JsonElement, ValidationContext<T>, string> unreadable)
    {
        var name = JsonContract<T>.NameOf(property);
        return RuleFor(property)
            .Must((_, _, context) => !Fields(context).Unreadable(name))
            .WithExactMessage((x, _, context) => unreadable(x, Fields(context).Value(name), context))
            .OverridePropertyName(name);
    }

    /// <summary>A rule on one field for a mistake that more than its own value decides (e.g. an option of another sampler).</summary>
    protected IRuleBuilderOptions<T, TProperty> CrossField<TProperty>(Expression<Func<T, TProperty>> property, string message,
        Func<T, ValidationContext<T>, bool> mistaken) =>
        RuleFor(property).Must((x, _, context) => !mistaken(x, context)).WithExactMessage((_, _) => message)
            .OverridePropertyName(JsonContract<T>.NameOf(property));

    /// <summary>The type error of an integer field: an integer beyond the property's type is out of range, anything else
    /// is no integer.</summary>
    protected static Func<JsonElement, string> NotAnInteger(string name, long min, long max) => v =>
        v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var big)
            ? $"{name} must be in {min}..{max}, got {big}"
            : $"{name} must be an integer in {min}..{max}, not {JsonText.Show(v)}";
}

public static class ExactMessages
{
    /// <summary><c>WithMessage</c> for a text used as it is: FluentValidation reads <c>{Name}</c> in a message as a
    /// placeholder, and our messages quote what the client sent. The text goes in as a placeholder's value, which
    /// FluentValidation inserts unread.</summary>
    public static IRuleBuilderOptions<T, TProperty> WithExactMessage<T, TProperty>(this IRuleBuilderOptions<T, TProperty> rule,
        Func<T, TProperty, ValidationContext<T>, string> message) =>
        rule.Configure(r => r.Current.SetErrorMessage((context, value) =>
        {
            context.MessageFormatter.AppendArgument("Exact", message(context.InstanceToValidate, value, context));
            return "{Exact}";
        }));

    /// <inheritdoc cref="WithExactMessage{T, TProperty}(IRuleBuilderOptions{T, TProperty}, Func{T, TProperty, ValidationContext{T}, string})"/>
    public static IRuleBuilderOptions<T, TProperty> WithExactMessage<T, TProperty>(this IRuleBuilderOptions<T, TProperty> rule,
        Func<T, TProperty, string> message) => rule.WithExactMessage((x, v, _) => message(x, v));

    /// <summary>Adds the failures, keyed by field, after those already in <paramref name="errors"/>.</summary>
    public static void AddTo(this ValidationResult result, Dictionary<string, string[]> errors, Func<string, string>? rename = null)
    {
        foreach (var failure in result.Errors)
            errors.AddError(rename?.Invoke(failure.PropertyName) ?? failure.PropertyName, failure.ErrorMessage);
    }

    /// <summary>Adds <paramref name="messages"/> to <paramref name="field"/>'s, after those it has.</summary>
    public static void AddError(this Dictionary<string, string[]> errors, string field, params IEnumerable<string> messages) =>
        errors[field] = [.. errors.GetValueOrDefault(field) ?? [], .. messages];
}
