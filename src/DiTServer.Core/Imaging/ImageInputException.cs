namespace DiTServer.Core.Imaging;

/// <summary>An uploaded image that cannot be used; <see cref="ArgumentException.ParamName"/> is the field's wire name
/// and the message says what was expected.</summary>
public sealed class ImageInputException(string field, string message) : ArgumentException(message, field)
{
    /// <summary>The message alone, without the " (Parameter 'x')" that <see cref="ArgumentException.Message"/> appends.</summary>
    public string Reason { get; } = message;
}
