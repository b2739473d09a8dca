using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>A temporary Training:DataRoot (with a small synthetic IDX dataset "bands") and Training:OutputRoot for the
/// admin API tests, removed afterwards.</summary>
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

    public void Dispose()
    {
        Directory.Delete(root, true);
        GC.SuppressFinalize(this);
    }
}
