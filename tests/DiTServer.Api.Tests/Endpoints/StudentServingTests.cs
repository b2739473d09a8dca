using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using DiTServer.Core.Model;
using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>A distilled student served like any model: its own defaults in requests and in /v1/models, one row per
/// image in step batching (no unconditional row), a 1-step request done after one forward, and every request's bytes the
/// same alone and batched with others.</summary>
public sealed class StudentServingTests(StudentServingTests.Server server) : IClassFixture<StudentServingTests.Server>
{
    public sealed class Server : IDisposable
    {
        private readonly string dir = Directory.CreateTempSubdirectory("dit-student-serve-").FullName;
        public string Student { get; }
        public ServerFactory Factory { get; }
        public LoadedModel Reference { get; }

        public Server()
        {
            // A tiny random teacher, distilled for a few steps into a 2-step student by the trainer's own run.
            string teacher = TinyDiT.Teacher(Path.Combine(dir, "teacher"), "a", "b", "c");
            var config = TinyDiT.Config(classes: 3);
            Student = Path.Combine(dir, "student");
            var info = new TrainingRunInfo
            {
                Name = "student", Config = config, Options = new TrainingOptions { BatchSize = 8, Steps = 3, LearningRate = 1e-3, CheckpointEvery = 0 },
                Distillation = new DistillationSettings { Teacher = teacher, StudentSteps = 2, TeacherSteps = 4, Trajectories = 16 },
            };
            if (!TrainingRun.Execute(info, Student, null, resume: false, initial: null, CancellationToken.None).Finished)
                throw new InvalidOperationException("the distillation did not finish");
            // Warm-up on: the server's own warm-up request runs on the student too (one row, w an input).
            Factory = new ServerFactory(("DiT:Model", Student), ("Serving:MaxBatchRows", "64"))
            {
                Gate = new StepGate(open: true),
            };
            Reference = LoadedModel.Load(Student);
        }

        public void Dispose()
        {
            Factory.Dispose();
            Reference.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }

    private async Task<JsonElement> Post(HttpClient client, string body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var response = await client.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    [Fact]
    public async Task Models_lists_the_student_with_its_own_defaults()
    {
        var model = (await server.Factory.CreateClient().GetFromJsonAsync<JsonElement>("/v1/models")).GetProperty("models")[0];
        Assert.Equal("dpmpp_2m", model.GetProperty("default_sampler").GetString());
        Assert.True(model.GetProperty("guidance_conditioned").GetBoolean());
        Assert.Equal("teacher", model.GetProperty("distilled_from").GetString());
        Assert.Equal(4.0, model.GetProperty("default_cfg_scale").GetDouble());
        var dpm = model.GetProperty("samplers").EnumerateArray().Single(s => s.GetProperty("name").GetString() == "dpmpp_2m");
        Assert.Equal((2, 1), (dpm.GetProperty("default_steps").GetInt32(), dpm.GetProperty("default_order").GetInt32()));
    }

    /// <summary>The student's default request, 1, 2 and 4 steps at other scales, other samplers and a guidance interval,
    /// all at once: each gives the bytes it gives alone, every image is one row per forward, and the 1-step request
    /// needs one forward.</summary>
    [Fact]
    public async Task Concurrent_student_requests_each_equal_their_solo_bytes_with_one_row_per_image()
    {
        var student = new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Order = 1, Steps = 2, CfgScale = 4, GuidanceInModel = true };
        var cases = new (string Body, int Label, int N, SamplingOptions Options)[]
        {
            ("""{"class_label": 0, "num_images": 2, "seed": 1}""", 0, 2, student with { Seed = 1 }),
            ("""{"class_label": 1, "steps": 1, "cfg_scale": 2, "seed": 2}""", 1, 1, student with { Steps = 1, CfgScale = 2, Seed = 2 }),
            ("""{"class_label": 2, "num_images": 3, "steps": 4, "cfg_scale": 5.5, "seed": 3}""", 2, 3,
                student with { Steps = 4, CfgScale = 5.5, Seed = 3 }),
            ("""{"class_label": 1, "sampler": "unipc", "steps": 3, "seed": 4}""", 1, 1,
                new() { Sampler = SamplerKind.UniPc, Steps = 3, CfgScale = 4, Seed = 4, GuidanceInModel = true }),
            ("""{"class_label": 0, "steps": 4, "guidance_interval": [0, 500], "seed": 5}""", 0, 1,
                student with { Steps = 4, Seed = 5, GuidanceInterval = new GuidanceInterval(0, 500) }),
        };
        var client = server.Factory.CreateClient();
        // A longer request holds the worker after its first forward until every other request is in, so all share forwards.
        server.Factory.Gate!.Close();
        var blocker = Post(client, """{"class_label": 2, "steps": 6, "seed": 9}""");
        await server.Factory.WaitFor(s => s.ActiveRequests == 1, "the blocker admitted");
        var posts = cases.Select(c => Post(client, c.Body)).ToList();
        await server.Factory.WaitFor(s => s.ActiveRequests + s.QueueDepth == cases.Length + 1, "every request accepted");
        long before = server.Factory.Engine.Snapshot().Forwards;
        server.Factory.Gate.Open();
        var answers = await Task.WhenAll(posts);
        await blocker;
        var snapshot = server.Factory.Engine.Snapshot();
        Assert.True(snapshot.MaxRequestsInOneForward >= cases.Length, $"the requests did not share forwards: {snapshot}");
        // The blocker has 6 steps and every case at most 4: had a case needed two rows per image, or the scheduler planned
        // rows the runner did not make, the requests would have failed or needed more forwards.
        Assert.True(snapshot.Forwards - before <= 6, $"{snapshot.Forwards - before} forwards for the blocker's 6 steps");

        for (int k = 0; k < cases.Length; k++)
        {
            var solo = ImagePipeline.Generate(server.Reference, Enumerable.Repeat(cases[k].Label, cases[k].N).ToArray(), cases[k].Options);
            var images = answers[k].GetProperty("images").EnumerateArray().ToList();
            Assert.Equal(cases[k].N, images.Count);
            for (int i = 0; i < images.Count; i++)
                Assert.True(solo[i].Png.SequenceEqual(Convert.FromBase64String(images[i].GetProperty("png_base64").GetString()!)),
                    $"case {k} image {i}: the batched bytes differ from the solo ones");
        }
    }

    [Fact]
    public void A_student_is_one_row_per_image_at_every_step_for_the_scheduler_and_the_run_alike()
    {
        var options = new SamplingOptions
        {
            Sampler = SamplerKind.DpmPP2M, Order = 1, Steps = 4, CfgScale = 3, GuidanceInModel = true, GuidanceInterval = new GuidanceInterval(0, 600),
        };
        Assert.Equal([2, 2, 2, 2], StepTimesteps.RowsPerStep(options, 2));
        Assert.Equal(2, new DiTServer.Core.Serving.GenerationParameters(0, 2, options).RowsPerStep);
        using var run = new SamplingRun(null, server.Reference.Config, [0, 1], options, server.Reference.Device);
        Assert.Equal(2, run.RowsThisStep);
        // Options that plan an unconditional row do not reach a student's run (nor a student's options a plain model's).
        Assert.Throws<ArgumentException>(() => new SamplingRun(null, server.Reference.Config, [0], options with { GuidanceInModel = false },
            server.Reference.Device).Dispose());
    }
}
