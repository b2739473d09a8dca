using System.Text.RegularExpressions;

namespace DiTServer.Api.Tests;

/// <summary>No two folders of a project use each other, directly or around a circle: a <c>using</c> (or a qualified
/// name) that closes a cycle fails here with the edges and a file for each, so the layers stay readable
/// (Core: Model, Diffusion, Vae, Checkpoints, Imaging → Sampling → Pipeline → Serving, Training, Evaluation;
/// Api: Http → Tenants → Observability → Generation → Jobs → Endpoints → OpenApi, Hosting, Admin, Cli).</summary>
public sealed class FolderCycleTests
{
    [Theory]
    [InlineData("DiTServer.Core")]
    [InlineData("DiTServer.Api")]
    public void The_folders_of_a_project_have_no_cycle(string project)
    {
        var edges = Edges(Path.Combine(RepositoryPaths.Root, "src", project), project);
        var cycles = StronglyConnected(edges).Where(c => c.Count > 1).ToList();
        Assert.True(cycles.Count == 0, string.Join("\n", cycles.Select(c => string.Join("\n", c.SelectMany(a =>
            edges[a].Where(e => c.Contains(e.Key)).Select(e => $"{a} -> {e.Key} ({e.Value})"))))));
    }

    [Fact]
    public void The_check_sees_a_cycle_made_by_usings()
    {
        var root = Directory.CreateTempSubdirectory().FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "A"));
            Directory.CreateDirectory(Path.Combine(root, "B"));
            File.WriteAllText(Path.Combine(root, "A", "X.cs"), "using P.B;\nnamespace P.A;\nclass X { Y y; }");
            File.WriteAllText(Path.Combine(root, "B", "Y.cs"), "namespace P.B;\nclass Y { A.X x; }");
            Assert.Contains(StronglyConnected(Edges(root, "P")), c => c.Count == 2);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>Folder → the folders it names (with one file that does), from <c>using Project.Folder</c>,
    /// <c>Project.Folder.Type</c> and the project-relative <c>Folder.Type</c>; comments are ignored.</summary>
    private static Dictionary<string, Dictionary<string, string>> Edges(string root, string project)
    {
        var folders = Directory.GetDirectories(root).Select(Path.GetFileName).Where(d => d is not ("bin" or "obj" or "wwwroot" or "Properties"))
            .Cast<string>().ToHashSet();
        var names = string.Join("|", folders.Select(Regex.Escape));
        var qualified = new Regex($@"{Regex.Escape(project)}\.({names})\b");
        var relative = new Regex($@"(?<![\w.])({names})\.[A-Z]\w*");
        var edges = folders.ToDictionary(f => f, _ => new Dictionary<string, string>());
        foreach (var folder in folders)
            foreach (var file in Directory.EnumerateFiles(Path.Combine(root, folder), "*.cs", SearchOption.AllDirectories))
            {
                if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")) continue;
                var code = Regex.Replace(File.ReadAllText(file), @"//[^\n]*", "");
                foreach (Match m in qualified.Matches(code).Concat(relative.Matches(code)))
                    if (m.Groups[1].Value != folder) edges[folder].TryAdd(m.Groups[1].Value, Path.GetRelativePath(root, file));
            }
        return edges;
    }

    /// <summary>Tarjan's strongly connected components.</summary>
    private static List<List<string>> StronglyConnected(Dictionary<string, Dictionary<string, string>> edges)
    {
        var index = new Dictionary<string, int>();
        var low = new Dictionary<string, int>();
        var stack = new Stack<string>();
        var result = new List<List<string>>();
        void Visit(string v)
        {
            index[v] = low[v] = index.Count;
            stack.Push(v);
            foreach (var w in edges[v].Keys)
            {
                if (!index.ContainsKey(w)) { Visit(w); low[v] = Math.Min(low[v], low[w]); }
                else if (stack.Contains(w)) low[v] = Math.Min(low[v], index[w]);
            }
            if (low[v] != index[v]) return;
            var component = new List<string>();
            string x;
            do { x = stack.Pop(); component.Add(x); } while (x != v);
            result.Add(component);
        }
        foreach (var v in edges.Keys.Where(v => !index.ContainsKey(v)).ToList()) Visit(v);
        return result;
    }
}
