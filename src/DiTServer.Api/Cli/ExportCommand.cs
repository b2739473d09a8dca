using System.CommandLine;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Training;

namespace DiTServer.Api.Cli;

/// <summary><c>export</c>: turns a training checkpoint into a served model folder (model.json + EMA safetensors [+ .pt]).</summary>
public static class ExportCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint.ckpt, or the run folder holding it", Required = true };
        var output = new Option<string>("--out") { Description = "Folder to write model.json and model.safetensors into", Required = true };
        var name = new Option<string?>("--name") { Description = "Model name (default: the run's)" };
        var pt = new Option<bool>("--pt") { Description = "Also write <name>.pt with {\"model\", \"ema\"} for the official PyTorch code" };
        var command = new Command("export", "Export a training checkpoint's EMA weights as a model folder the server loads") { checkpoint, output, name, pt };
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            string path = parse.GetValue(checkpoint)!;
            if (Directory.Exists(path)) path = Path.Combine(path, TrainingSession.CheckpointFile);
            var (info, model, ema) = TrainingCheckpoint.LoadModels(path);
            using (model)
            using (ema)
            {
                string modelName = parse.GetValue(name) ?? info.Name ?? "dit";
                // A distillation's export names its teacher and sampling and decodes with the teacher's VAE, as at the end of its run.
                var distilled = info.Distillation is { } d ? ModelExport.Distilled.Of(d, ModelManifest.Load(d.Teacher)) : null;
                var files = ModelExport.Write(parse.GetValue(output)!, modelName, info.Config, ema, model, info.ClassNames,
                    parse.GetValue(pt) ? $"{modelName}.pt" : null, distilled?.Vae ?? info.Latent?.Vae, distilled);
                stdout.WriteLine($"exported step {info.Step} of {modelName}: {string.Join(", ", files)}");
            }
            return CommandLine.ExitOk;
        }));
        return command;
    }
}
