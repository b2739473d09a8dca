using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>A temporary Training:DataRoot (with a small synthetic IDX dataset "bands") and Training:OutputRoot for the
/// admin API tests, removed afterwards, and the HTTP helpers they share.</summary>
public abstract class AdminTestFolders : IDisposable
{
    protected const string Key = "test-admin-key";
    private readonly string root;

    protected AdminTestFolders(string prefix)
    {
        root = Directory.CreateTempSubdirectory(prefix).FullName;
        SyntheticIdx.Write(Path.Combine(DataRoot, "bands"), count: 64, side: 8, classes: 2);
        Directory.CreateDirectory(OutputRoot);
    }

    protected string Root => root;
    protected string DataRoot => Path.Combine(root, "data");
    protected string OutputRoot => Path.Combine(root, "runs");

    protected static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>Polls a training job until its state is one of <paramref name="states"/> (60 s at most).</summary>
    protected static async Task<JsonElement> WaitForState(HttpClient client, string id, params string[] states)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var status = await client.GetFromJsonAsync<JsonElement>($"/v1/admin/training/jobs/{id}");
            if (states.Contains(status.GetProperty("state").GetString())) return status;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"job {id}: {status}");
            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        Directory.Delete(root, true);
        GC.SuppressFinalize(this);
    }
}
