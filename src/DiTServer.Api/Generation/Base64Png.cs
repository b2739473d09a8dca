using DiTServer.Core.Imaging;

namespace DiTServer.Api.Generation;

/// <summary>A PNG sent inside a JSON string (<c>init_image</c>, <c>mask</c>): standard base64, or a
/// <c>data:image/png;base64,</c> URL as a browser's FileReader gives it.</summary>
public static class Base64Png
{
    /// <returns>The bytes, or null when the text is not base64.</returns>
    public static byte[]? TryDecode(string text)
    {
        var s = text.AsSpan().Trim();
        if (s.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            int comma = s.IndexOf(',');
            if (comma < 0 || !s[..comma].EndsWith(";base64", StringComparison.OrdinalIgnoreCase)) return null;
            s = s[(comma + 1)..];
        }
        var bytes = new byte[s.Length / 4 * 3 + 3];
        return Convert.TryFromBase64Chars(s, bytes, out int written) ? bytes[..written] : null;
    }

    /// <exception cref="ImageInputException">Not base64; the message names <paramref name="field"/>.</exception>
    public static byte[] Decode(string text, string field) => TryDecode(text) ?? throw new ImageInputException(field, NotBase64(field));

    public static string NotBase64(string field) =>
        $"{field} is not valid base64; send the PNG file's bytes base64-encoded (a data:image/png;base64, URL also works)";
}
