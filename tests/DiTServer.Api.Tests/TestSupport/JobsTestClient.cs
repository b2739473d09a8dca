using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>HTTP helpers for the jobs tests: create, read state, read Server-Sent Events.</summary>
internal static class JobsTestClient
{
    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>A guided 1000-step job (2 rows): with a 4-row batch it keeps a 2-image guided job queued behind it until
    /// the test cancels it, so a test sees the states it asserts without racing the worker.</summary>
    public const string Blocker = """{"class_label": 1, "steps": 1000, "cfg_scale": 4, "seed": 1}""";

    /// <summary>Starts <see cref="Blocker"/> on an idle engine and returns its id once it has taken a step.</summary>
    public static async Task<string> StartBlocker(this HttpClient client, ServerFactory factory)
    {
        await factory.WaitFor(s => s.Ready && s.ActiveRequests == 0 && s.QueueDepth == 0, "an idle engine");
        var (id, _, _) = await client.CreateJob(Blocker);
        await client.WaitForJob(id, j => j.State() == "running" && j.GetProperty("step").GetInt32() > 0, "the blocker running");
        return id;
    }

    public static async Task<(string Id, HttpResponseMessage Response, JsonElement Body)> CreateJob(this HttpClient client, string body)
    {
        var response = await client.PostAsync("/v1/jobs", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{response.StatusCode}: {text}");
        var root = JsonDocument.Parse(text).RootElement.Clone();
        return (root.GetProperty("id").GetString()!, response, root);
    }

    public static async Task<JsonElement> GetJob(this HttpClient client, string id)
    {
        var response = await client.GetAsync($"/v1/jobs/{id}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<JsonElement> WaitForJob(this HttpClient client, string id, Func<JsonElement, bool> condition, string what, double seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var job = await client.GetJob(id);
            if (condition(job)) return job;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {seconds} s for {what}; job: {job}");
            await Task.Delay(20);
        }
    }

    public static string State(this JsonElement job) => job.GetProperty("state").GetString()!;

    public static async Task<JsonElement> AssertProblem(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {status}, got {response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var root = JsonDocument.Parse(text).RootElement.Clone();
        Assert.Equal((int)status, root.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("detail").GetString()), text);
        return root;
    }

    /// <summary>An open event stream: read one event at a time.</summary>
    public sealed class EventStream(HttpResponseMessage response, StreamReader reader) : IDisposable
    {
        public HttpResponseMessage Response => response;

        /// <summary>The next event (type, data), or null when the server ended the stream.</summary>
        public async Task<(string Type, JsonElement Data)?> Next(CancellationToken ct = default)
        {
            string type = "message";
            var data = new StringBuilder();
            while (true)
            {
                var line = await reader.ReadLineAsync(ct);
                if (line is null) return null;
                if (line.Length == 0)
                {
                    if (data.Length == 0) continue;
                    return (type, JsonDocument.Parse(data.ToString()).RootElement.Clone());
                }
                if (line.StartsWith("event:")) type = line[6..].Trim();
                else if (line.StartsWith("data:")) data.Append(line[5..].TrimStart());
            }
        }

        public async Task<List<(string Type, JsonElement Data)>> ReadToEnd(double seconds = 30)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            var events = new List<(string, JsonElement)>();
            while (await Next(timeout.Token) is { } e) events.Add(e);
            return events;
        }

        public void Dispose()
        {
            reader.Dispose();
            response.Dispose();
        }
    }

    public static async Task<EventStream> OpenEvents(this HttpClient client, string id)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/jobs/{id}/events");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return new EventStream(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }
}
