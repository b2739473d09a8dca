using MinDataRate = Microsoft.AspNetCore.Server.Kestrel.Core.MinDataRate;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace DiTServer.Api.Http;

/// <summary>The one way a POST body is read on this server: bounded in size and in time, and every client fault raised as
/// a <see cref="BadHttpRequestException"/> with its status (413 too large, 408 too slow; Kestrel's own for malformed
/// chunked framing or a body cut off mid-way, 400), which <see cref="ClientFaults"/> answers as problem+json.</summary>
public static class RequestBody
{
    /// <summary>Reads the whole body within <c>RequestBody:Timeout</c>.</summary>
    public static Task<ReadOnlyMemory<byte>> ReadAsync(HttpRequest request, int max) =>
        ReadAsync(request, max, request.HttpContext.RequestServices.GetService<IOptions<RequestBodyOptions>>()?.Value.Timeout
                                ?? new RequestBodyOptions().Timeout);

    /// <summary>Reads the whole body.</summary>
    /// <param name="max">Largest accepted body in bytes; one more is 413 (a declared Content-Length over it is refused
    /// before anything is read).</param>
    /// <param name="timeout">Time the whole body may take to arrive; then 408.</param>
    /// <exception cref="BadHttpRequestException">413, 408, or 400 for a malformed or truncated body.</exception>
    /// <remarks>The time limit is Kestrel's own minimum body data rate, set for this request: after <paramref name="timeout"/>
    /// the body must have come at (declared length, or <paramref name="max"/> when chunked) / timeout bytes per second
    /// on average, so a body is complete within about the timeout. Kestrel's default (240 B/s) lets a client hold a slot
    /// for minutes at 300 B/s; a cancelled read, the other way to bound the time, leaves Kestrel's body reader broken
    /// ("Reading is already in progress" logged with a stack trace when it drains the connection).</remarks>
    public static async Task<ReadOnlyMemory<byte>> ReadAsync(HttpRequest request, int max, TimeSpan timeout)
    {
        if (request.ContentLength > max) throw TooLarge(max);
        if (request.HttpContext.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rate)
        {
            double expected = Math.Max(1, request.ContentLength ?? max);
            rate.MinDataRate = new MinDataRate(bytesPerSecond: Math.Max(1, expected / timeout.TotalSeconds), gracePeriod: timeout);
        }
        var aborted = request.HttpContext.RequestAborted;
        // Sized by the declared length when there is one, so a 20-byte body does not cost a max-sized buffer.
        var buffer = new byte[(int)Math.Min(max + 1L, (request.ContentLength ?? Math.Min(max, 4096)) + 1)];
        int total = 0;
        try
        {
            while (true)
            {
                if (total == buffer.Length)
                {
                    if (total > max) throw TooLarge(max);
                    Array.Resize(ref buffer, Math.Min(max + 1, buffer.Length * 2));
                }
                int n = await request.Body.ReadAsync(buffer.AsMemory(total), aborted);
                if (n == 0) break;
                total += n;
            }
        }
        catch (IOException e) when (e is not BadHttpRequestException && !aborted.IsCancellationRequested)
        {
            // Kestrel reports some framing errors as a plain IOException: a chunk size that overflows is
            // IOException("Bad chunk size data.") around an OverflowException. The client sent it; it is a 400.
            throw new BadHttpRequestException(e.Message, StatusCodes.Status400BadRequest, e);
        }
        if (total > max) throw TooLarge(max);
        return buffer.AsMemory(0, total);
    }

    private static BadHttpRequestException TooLarge(int max) =>
        new($"the body is larger than {max} bytes", StatusCodes.Status413PayloadTooLarge);
}
