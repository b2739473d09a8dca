using System.Buffers.Binary;
using System.Text.Json;

namespace DiTServer.Core.Tests;

/// <summary>The <c>__metadata__</c> strings of a safetensors header (PyBridge skips them).</summary>
public static class SafetensorsMetadata
{
    public static Dictionary<string, string> Read(string path)
    {
        using var stream = File.OpenRead(path);
        var lengthBytes = new byte[8];
        stream.ReadExactly(lengthBytes);
        var header = new byte[BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes)];
        stream.ReadExactly(header);
        using var doc = JsonDocument.Parse(header);
        return doc.RootElement.TryGetProperty("__metadata__", out var meta)
            ? meta.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "")
            : new Dictionary<string, string>();
    }
}
