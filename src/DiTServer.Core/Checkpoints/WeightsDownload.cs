using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Polly;
using Polly.Retry;

namespace DiTServer.Core.Checkpoints;

/// <summary>Downloads one weights file with resume and SHA-256 verification.</summary>
/// <remarks>Bytes go to <c>destination.partial</c>; a dropped connection is resumed with an HTTP Range request from
/// what is already on disk (a server that ignores Range restarts the file). Only a file whose SHA-256 equals the
/// expected one is renamed to <paramref name="destination"/>; on a mismatch the partial file is deleted. Retries are
/// Polly's (exponential backoff with jitter); they wrap the whole fetch rather than the HttpClient's handler, because
/// each attempt must ask for a new Range, from the bytes already on disk.</remarks>
public static class WeightsDownload
{
    /// <param name="firstRetryDelay">The first backoff (doubling, with jitter); 1 s unless a test asks for less.</param>
    public static async Task DownloadAsync(HttpClient http, Uri url, string destination, string expectedSha256,
        IProgress<(long Done, long? Total)>? progress = null, int maxAttempts = 5, CancellationToken cancel = default,
        TimeSpan? firstRetryDelay = null)
    {
        expectedSha256 = expectedSha256.Trim().ToLowerInvariant();
        if (expectedSha256.Length != 64 || !expectedSha256.All(Uri.IsHexDigit))
            throw new ArgumentException($"expected SHA-256 for {Path.GetFileName(destination)} must be 64 hex digits");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(destination))!);
        string partial = destination + ".partial";
        if (maxAttempts < 1) throw new ArgumentOutOfRangeException(nameof(maxAttempts), maxAttempts, "at least one attempt");
        var pipeline = maxAttempts == 1 ? ResiliencePipeline.Empty : new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                // A dropped connection or a failed request; the next attempt resumes from the bytes already written.
                ShouldHandle = new PredicateBuilder().Handle<IOException>().Handle<HttpRequestException>(),
                MaxRetryAttempts = maxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = firstRetryDelay ?? TimeSpan.FromSeconds(1),
            })
            .Build();
        await pipeline.ExecuteAsync(async ct => await FetchAsync(http, url, partial, progress, ct), cancel);
        string actual;
        await using (var file = File.OpenRead(partial))
            actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(file, cancel));
        if (actual != expectedSha256)
        {
            File.Delete(partial);
            throw new InvalidDataException(
                $"SHA-256 mismatch for {Path.GetFileName(destination)} from {url}: expected {expectedSha256}, got {actual}; the downloaded file was deleted");
        }
        File.Move(partial, destination, overwrite: true);
    }

    private static async Task FetchAsync(HttpClient http, Uri url, string partial, IProgress<(long, long?)>? progress, CancellationToken cancel)
    {
        long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && have > 0)
            return; // the partial file is already complete; the checksum decides
        response.EnsureSuccessStatusCode();
        bool resumed = response.StatusCode == HttpStatusCode.PartialContent;
        if (!resumed) have = 0; // the server sent the whole file
        long? total = response.Content.Headers.ContentLength is { } length ? length + have : null;
        await using var output = new FileStream(partial, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write);
        await using var input = await response.Content.ReadAsStreamAsync(cancel);
        var buffer = new byte[1 << 16];
        long done = have;
        int read;
        while ((read = await input.ReadAsync(buffer, cancel)) > 0)
        {
            await output.WriteAsync(buffer.AsMemory(0, read), cancel);
            done += read;
            progress?.Report((done, total));
        }
        if (total is { } expected && done < expected)
            throw new IOException($"connection closed after {done} of {expected} bytes");
    }
}
