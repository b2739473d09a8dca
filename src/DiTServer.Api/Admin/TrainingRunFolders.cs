using DiTServer.Core.Training;

namespace DiTServer.Api.Admin;

/// <summary>The run folders under the training output root, as found on disk: a run folder is one that holds a checkpoint.</summary>
/// <remarks>Folders are walked without following links (a linked folder may lead outside the root), to a bounded depth.</remarks>
public static class TrainingRunFolders
{
    /// <summary>Run folders are looked for this deep below the output root; a request's <c>output</c> may not be deeper
    /// (<see cref="TrainingJobRequestValidator.MaxOutputDepth"/>), so every run the API creates is listed after a restart.</summary>
    public const int MaxDepth = 8;

    /// <summary>The folders with a checkpoint. A run folder's subfolders are searched too: a run in the output root itself
    /// (which older versions accepted as <c>"output": "."</c>) or one nested in another must not hide the others.</summary>
    public static IEnumerable<string> Under(string root) =>
        Folders(root, 0).Where(f => File.Exists(Path.Combine(f, TrainingSession.CheckpointFile)));

    /// <summary>Every folder under <paramref name="folder"/> (itself included) down to <see cref="MaxDepth"/>, without
    /// following links (a linked folder may lead outside the root).</summary>
    private static IEnumerable<string> Folders(string folder, int depth)
    {
        yield return folder;
        if (depth >= MaxDepth) yield break;
        IEnumerable<string> children;
        try { children = Directory.EnumerateDirectories(folder).Order(StringComparer.Ordinal).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { yield break; }
        foreach (var child in children)
        {
            if (new DirectoryInfo(child).LinkTarget is not null) continue;
            foreach (var inner in Folders(child, depth + 1)) yield return inner;
        }
    }

    /// <summary>Deletes the <c>*.ckpt.tmp</c> files that a process killed inside a checkpoint write (SIGKILL, OOM killer)
    /// left in the folders under <paramref name="root"/>: the complete checkpoint beside one is still the run's, and nothing
    /// else would remove it. Runs once at start, before any job of this process writes.</summary>
    public static void DeleteLeftoverCheckpoints(string root, ILogger logger)
    {
        var deleted = new List<string>();
        foreach (var folder in Folders(root, 0))
        {
            IEnumerable<string> leftovers;
            try { leftovers = Directory.EnumerateFiles(folder, "*.ckpt.tmp").ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            foreach (var file in leftovers)
            {
                try
                {
                    if (new FileInfo(file).LinkTarget is not null || !RegularFile.Is(file)) continue; // ours are regular files
                    File.Delete(file);
                    deleted.Add(Path.GetRelativePath(root, file).Replace('\\', '/'));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    logger.LogWarning("Could not delete the partial checkpoint {File} left by a killed process: {Error}", file, e.Message);
                }
            }
        }
        if (deleted.Count > 0)
            logger.LogInformation("Deleted {Count} partial checkpoint file(s) left by a killed training process: {Files}", deleted.Count,
                string.Join(", ", deleted));
    }
}
