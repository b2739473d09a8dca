using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Skips, saying why, when Debian's python3-torch is missing (.ci/run installs it, so CI always runs these).</summary>
public sealed class PythonTorchFactAttribute : FactAttribute
{
    public PythonTorchFactAttribute()
    {
        if (!PyTorchInteropTests.PythonHasTorch.Value)
            Skip = "/usr/bin/python3 with torch is missing: apt-get install -y python3-torch (.ci/run does) to run the .pt interop tests";
    }
}

/// <summary>The `.pt` claims of docs/models.md, checked against a real PyTorch (Debian's python3-torch): the export's `.pt` is
/// read by Python's <c>torch.load</c> with every tensor equal, and a state dict written by <c>torch.save</c> in Python
/// loads strictly here with every tensor equal.</summary>
public class PyTorchInteropTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-pt-").FullName;

    public void Dispose() => Directory.Delete(root, true);

    internal static readonly Lazy<bool> PythonHasTorch = new(() =>
    {
        try { return Python("import torch").Code == 0; }
        catch (System.ComponentModel.Win32Exception) { return false; } // no python3 at all
    });

    /// <summary>Debian's interpreter, where python3-torch installs (a pyenv or venv python3 earlier on PATH has no torch).</summary>
    private const string DebianPython = "/usr/bin/python3";

    private static (int Code, string Out, string Err) Python(string script, params string[] args)
    {
        var info = new ProcessStartInfo(DebianPython) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2))) { p.Kill(true); throw new TimeoutException("python3 did not finish in 2 min"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static DiT TinyModel(int seed)
    {
        var config = new DiTConfig { InputSize = 8, PatchSize = 2, InChannels = 4, HiddenSize = 32, Depth = 2, NumHeads = 2, NumClasses = 10 };
        var model = new DiT(config);
        using var g = new Generator((ulong)seed);
        model.RandomizeWeights(0.05, g);
        return model;
    }

    /// <summary>Every tensor as (shape, float64 values), keyed by name.</summary>
    private static Dictionary<string, (long[] Shape, double[] Values)> Values(IEnumerable<(string Name, Tensor T)> tensors) =>
        tensors.ToDictionary(p => p.Name, p =>
        {
            using var d = p.T.detach().to_type(float64).cpu().contiguous();
            return (p.T.shape, d.data<double>().ToArray());
        });

    private const string DumpScript = """
        import json, sys, torch
        root = torch.load(sys.argv[1], map_location="cpu")
        sd = root[sys.argv[2]] if len(sys.argv) > 2 else root
        print(json.dumps({k: [list(v.shape), v.double().flatten().tolist()] for k, v in sd.items()}))
        """;

    [PythonTorchFact]
    public void The_exported_pt_is_read_by_torch_load_with_every_tensor_equal()
    {
        using var model = TinyModel(1);
        using var ema = TinyModel(2);
        var written = ModelExport.Write(root, "tiny", model.Config, ema, model, null, ptFile: "model.pt");
        string pt = Path.Combine(root, "model.pt");
        Assert.Contains(pt, written);
        foreach (var (key, expected) in new[] { ("model", model), ("ema", ema) })
        {
            var (code, stdout, stderr) = Python(DumpScript, pt, key);
            Assert.True(code == 0, $"torch.load failed: {stderr}");
            var fromPython = JsonDocument.Parse(stdout).RootElement;
            var ours = Values(expected.state_dict().Select(kv => (kv.Key, kv.Value)));
            Assert.Equal(ours.Keys.Order(), fromPython.EnumerateObject().Select(p => p.Name).Order());
            foreach (var p in fromPython.EnumerateObject())
            {
                Assert.Equal(ours[p.Name].Shape, p.Value[0].EnumerateArray().Select(d => d.GetInt64()));
                Assert.Equal(ours[p.Name].Values, p.Value[1].EnumerateArray().Select(v => v.GetDouble()));
            }
        }
    }

    [PythonTorchFact]
    public void A_state_dict_saved_by_torch_in_python_loads_strictly_with_every_tensor_equal()
    {
        using var shapes = TinyModel(3);
        var spec = JsonSerializer.Serialize(shapes.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape));
        string pt = Path.Combine(root, "from-python.pt");
        var (code, _, stderr) = Python("""
            import json, sys, torch
            g = torch.Generator().manual_seed(7)
            spec = json.loads(sys.argv[1])
            torch.save({k: torch.randn(*s, generator=g) for k, s in spec.items()}, sys.argv[2])
            """, spec, pt);
        Assert.True(code == 0, $"torch.save failed: {stderr}");

        var loaded = CheckpointFile.LoadStateDict(pt);
        using var model = TinyModel(4);
        StateDict.LoadStrict(model, loaded, pt);
        var (dumpCode, stdout, dumpErr) = Python(DumpScript, pt);
        Assert.True(dumpCode == 0, dumpErr);
        var fromPython = JsonDocument.Parse(stdout).RootElement;
        var ours = Values(model.state_dict().Select(kv => (kv.Key, kv.Value)));
        foreach (var p in fromPython.EnumerateObject())
            Assert.Equal(p.Value[1].EnumerateArray().Select(v => v.GetDouble()), ours[p.Name].Values);
        foreach (var t in loaded.Values) t.Dispose();
    }
}
