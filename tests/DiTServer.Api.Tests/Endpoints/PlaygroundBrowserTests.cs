using Microsoft.Playwright;

namespace DiTServer.Api.Tests;

/// <summary>The playground page in headless Chromium against a real Kestrel server on the tiny model: load, pick a
/// class, submit, watch the job's previews and then its images; saves a screenshot (artifacts/playground.png, docs/playground.png).</summary>
public sealed class PlaygroundBrowserTests
{
    [ChromiumFact]
    public async Task Page_submits_a_job_follows_its_progress_and_shows_the_images()
    {
        // DIT_SCREENSHOT_MODEL (e.g. models/dit-fashion-mnist) runs the same test on another model, with 50 steps, to
        // refresh the documentation screenshot; by default it runs on the fixture model with 12 steps.
        var screenshotModel = Environment.GetEnvironmentVariable("DIT_SCREENSHOT_MODEL");
        int steps = screenshotModel is null ? 12 : 50;
        // 40 ms per step: the page asks for a preview every ceil(steps / 10) steps, and each must stay on screen
        // long enough to be seen before the next one (or the images) replaces it.
        var delay = TimeSpan.FromMilliseconds(40);
        using var factory = screenshotModel is null
            ? new ServerFactory(("Serving:MaxBatchRows", "16")) { StepDelay = delay }
            : new ServerFactory(("Serving:MaxBatchRows", "16"), ("DiT:Model", Path.GetFullPath(screenshotModel))) { StepDelay = delay };
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        await factory.WaitFor(s => s.Ready, "warm-up");
        var page = await session.Browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1000, Height = 640 } });
        var consoleErrors = new List<string>();
        page.Console += (_, m) =>
        {
            // Chromium logs the 503 this test injects below; any other console error fails the test.
            if (m.Type == "error" && !m.Text.Contains("status of 503")) consoleErrors.Add($"{m.Text} ({m.Location})");
        };

        // The first submission is answered with a problem (as a full queue would be), to see its banner go away on the next.
        var sentBodies = new List<string>();
        int jobPosts = 0;
        await page.RouteAsync("**/v1/jobs", async route =>
        {
            if (route.Request.Method != "POST") { await route.ContinueAsync(); return; }
            sentBodies.Add(route.Request.PostData ?? "");
            if (Interlocked.Increment(ref jobPosts) == 1)
                await route.FulfillAsync(new RouteFulfillOptions
                {
                    Status = 503, ContentType = "application/problem+json",
                    Body = """{"title": "Queue full", "status": 503, "detail": "all 64 queue places are taken"}""",
                });
            else await route.ContinueAsync();
        });

        await page.GotoAsync(address + "/");
        Assert.Equal("DiTServer playground", await page.TitleAsync());
        await page.WaitForFunctionAsync("document.querySelectorAll('#class option').length > 0");
        // Sampler and guidance choices come from GET /v1/models.
        var models = System.Text.Json.JsonDocument.Parse(await factory.CreateClient().GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        var samplerNames = models.GetProperty("samplers").EnumerateArray()
            .Select(e => e.ValueKind == System.Text.Json.JsonValueKind.String ? e.GetString() : e.GetProperty("name").GetString()).ToArray();
        Assert.Equal(samplerNames, await page.EvalOnSelectorAllAsync<string[]>("#sampler option", "os => os.map(o => o.value)"));
        Assert.Equal(models.GetProperty("guidance_modes").EnumerateArray().Select(e => e.GetString()).ToArray(),
            await page.EvalOnSelectorAllAsync<string[]>("#guidance option", "os => os.map(o => o.value)"));
        await page.SelectOptionAsync("#sampler", "ddim");
        await page.SelectOptionAsync("#guidance", "all");
        await page.FillAsync("#class-search", "3");
        var option = page.Locator("#class option").First;
        Assert.StartsWith("3 · ", await option.TextContentAsync());
        await page.SelectOptionAsync("#class", "3");
        // The numeric field and the slider are one value.
        await page.FillAsync("#steps-number", steps.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(steps.ToString(System.Globalization.CultureInfo.InvariantCulture), await page.InputValueAsync("#steps"));
        await page.UncheckAsync("#random-seed");
        await page.FillAsync("#seed", "42");
        await page.FillAsync("#count", "4");
        // Records every preview shown while the job runs (the images replace them at the end).
        await page.EvaluateAsync("""
            () => {
              window.previewsSeen = [];
              new MutationObserver(() => {
                const shown = document.querySelectorAll('#results img.preview');
                if (shown.length > 0) window.previewsSeen.push({ count: shown.length, caption: document.querySelector('#results figcaption').textContent });
              }).observe(document.getElementById('results'), { childList: true });
              window.statusesSeen = [];
              new MutationObserver(() => window.statusesSeen.push(document.getElementById('status').textContent))
                .observe(document.getElementById('status'), { childList: true, characterData: true, subtree: true });
            }
            """);
        await page.ClickAsync("#generate");
        await page.Locator("#error").WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Visible });
        Assert.Contains("queue places are taken", await page.TextContentAsync("#error"));
        await page.ClickAsync("#generate");
        Assert.False(await page.IsVisibleAsync("#error"), "the previous error stayed up after a new submission");

        await page.Locator("#results img:not(.preview)").Nth(3).WaitForAsync(new LocatorWaitForOptions { Timeout = 60_000 });
        Assert.Equal(4, await page.Locator("#results img").CountAsync());
        Assert.Equal("Done.", await page.TextContentAsync("#status"));
        Assert.True(await page.EvalOnSelectorAsync<bool>("#results img", "img => img.complete && img.naturalWidth > 0"), "the image did not decode");
        Assert.True(await page.IsVisibleAsync("#download"));
        Assert.Matches("^/v1/jobs/job_[0-9a-f]{32}/result$", await page.GetAttributeAsync("#download", "href"));
        Assert.Equal(steps, await page.EvalOnSelectorAsync<double>("#progress", "p => p.max"));
        Assert.Equal(steps, await page.EvalOnSelectorAsync<double>("#progress", "p => p.value"));
        Assert.Empty(consoleErrors);
        Assert.Equal(0, await page.Locator("#results img.preview").CountAsync()); // the previews gave way to the images
        Assert.False(await page.IsVisibleAsync("#error"));
        var sent = System.Text.Json.JsonDocument.Parse(sentBodies[^1]).RootElement;
        Assert.Equal("ddim", sent.GetProperty("sampler").GetString());
        Assert.Equal("all", sent.GetProperty("guidance").GetString());
        Assert.Equal(steps, sent.GetProperty("steps").GetInt32());
        // An ETA from the measured step time appears once two steps have been timed.
        var statuses = await page.EvaluateAsync<string[]>("() => window.statusesSeen");
        Assert.Contains(statuses, t => System.Text.RegularExpressions.Regex.IsMatch(t, @"^Denoising: step \d+ of \d+ · about .+ left \(\d+ ms/step\)\.$"));
        var previews = await page.EvaluateAsync<string[]>("() => window.previewsSeen.map(p => `${p.count} images, ${p.caption}`)");
        Assert.NotEmpty(previews);
        Assert.All(previews, p => Assert.Matches($"^4 images, #0 · step \\d+/{steps}$", p));

        // Every run leaves artifacts/playground.png; docs/playground.png (committed, shown in the docs) is refreshed
        // only when asked (DIT_UPDATE_SCREENSHOT=1) or missing, so test runs do not dirty the work tree.
        var root = RepositoryPaths.Root;
        var shot = Path.Combine(root, "artifacts", "playground.png");
        Directory.CreateDirectory(Path.GetDirectoryName(shot)!);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot, FullPage = true });
        var docs = Path.Combine(root, "docs", "playground.png");
        if (Environment.GetEnvironmentVariable("DIT_UPDATE_SCREENSHOT") == "1" || !File.Exists(docs)) File.Copy(shot, docs, overwrite: true);
    }
}

/// <summary>The playground reads <c>samplers</c> from /v1/models whether entries are names or objects with
/// <c>default_steps</c> (the richer form), and a sampler's default step count fills the steps fields.</summary>
public sealed class PlaygroundSamplerListTests
{
    [ChromiumFact]
    public async Task Sampler_objects_with_default_steps_set_the_steps()
    {
        using var factory = new ServerFactory(("Serving:WarmUp", "false"));
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        var page = await session.Browser.NewPageAsync();
        // The server's answer, with samplers rewritten as objects.
        await ModelsAnswer.Rewrite(page, "samplers", """[{"name": "ddpm", "default_steps": 250}, {"name": "ddim", "default_steps": 25}, {"name": "plain"}]""");
        await page.GotoAsync(address + "/");
        await page.WaitForFunctionAsync("document.querySelectorAll('#sampler option').length === 3");
        Assert.Equal(["ddpm", "ddim", "plain"], await page.EvalOnSelectorAllAsync<string[]>("#sampler option", "os => os.map(o => o.value)"));
        Assert.Equal("250", await page.InputValueAsync("#steps-number")); // the first sampler's default, on load
        await page.SelectOptionAsync("#sampler", "ddim");
        Assert.Equal("25", await page.InputValueAsync("#steps-number"));
        Assert.Equal("25", await page.InputValueAsync("#steps"));
        await page.FillAsync("#steps-number", "40");
        await page.SelectOptionAsync("#sampler", "plain"); // no default: the user's steps stay
        Assert.Equal("40", await page.InputValueAsync("#steps"));
    }
}

/// <summary>The playground starts at what a request without <c>sampler</c> and <c>steps</c> gets: the served model's
/// <c>default_sampler</c> and that sampler's <c>default_steps</c>, both read from GET /v1/models (before, it started at
/// the first sampler of the list, DDPM-50).</summary>
public sealed class PlaygroundDefaultsTests
{
    [ChromiumFact]
    public async Task Page_starts_at_the_models_default_sampler_and_its_default_steps()
    {
        using var factory = new ServerFactory(("Serving:WarmUp", "false"));
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        var model = System.Text.Json.JsonDocument.Parse(await factory.CreateClient().GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        string DefaultSteps(string sampler) => model.GetProperty("samplers").EnumerateArray()
            .Single(s => s.GetProperty("name").GetString() == sampler).GetProperty("default_steps").GetInt32()
            .ToString(System.Globalization.CultureInfo.InvariantCulture);
        string served = model.GetProperty("default_sampler").GetString()!;

        var page = await session.Browser.NewPageAsync();
        await page.GotoAsync(address + "/");
        await page.WaitForFunctionAsync("document.querySelectorAll('#sampler option').length > 0");
        Assert.Equal(served, await page.InputValueAsync("#sampler"));
        Assert.Equal(DefaultSteps(served), await page.InputValueAsync("#steps-number"));
        Assert.Equal(DefaultSteps(served), await page.InputValueAsync("#steps"));

        // Another model's default (the same answer with default_sampler rewritten): the page follows the answer, not a
        // value of its own.
        string other = served == "ddim" ? "dpmpp_2m" : "ddim";
        var second = await session.Browser.NewPageAsync();
        await second.RouteAsync("**/v1/models", async route =>
        {
            var response = await route.FetchAsync();
            var root = System.Text.Json.Nodes.JsonNode.Parse(await response.TextAsync())!;
            root["models"]![0]!["default_sampler"] = other;
            await route.FulfillAsync(new RouteFulfillOptions { Response = response, Body = root.ToJsonString() });
        });
        await second.GotoAsync(address + "/");
        await second.WaitForFunctionAsync("document.querySelectorAll('#sampler option').length > 0");
        Assert.Equal(other, await second.InputValueAsync("#sampler"));
        Assert.Equal(DefaultSteps(other), await second.InputValueAsync("#steps-number"));
    }

    [ChromiumFact]
    public async Task Page_says_when_the_models_cache_default_applies_to_the_chosen_sampler_and_steps()
    {
        using var factory = new ServerFactory(("Serving:WarmUp", "false"));
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        var page = await session.Browser.NewPageAsync();
        // The answer of a model that declares default_cache (the fixture declares none: then the page says nothing).
        await ModelsAnswer.Rewrite(page, "default_cache", """{"interval": 3, "mode": "taylor", "min_steps": 20, "samplers": ["ddim"]}""");
        await page.GotoAsync(address + "/");
        await page.WaitForFunctionAsync("document.querySelectorAll('#sampler option').length > 0");
        Assert.Equal("", await page.TextContentAsync("#cache-hint")); // the default sampler, UniPC: never cached by default
        await page.SelectOptionAsync("#sampler", "ddim");
        await page.FillAsync("#steps-number", "50");
        Assert.Contains("1 step in 3, cache mode taylor", await page.TextContentAsync("#cache-hint"));
        await page.FillAsync("#steps-number", "19");
        Assert.Equal("", await page.TextContentAsync("#cache-hint"));
        await page.FillAsync("#steps-number", "50");
        await page.SelectOptionAsync("#sampler", "ddpm"); // not a sampler the default names
        Assert.Equal("", await page.TextContentAsync("#cache-hint"));
    }
}

/// <summary>Serves the page the server's own <c>/v1/models</c> answer with one field of its model replaced, for what the
/// test model does not declare.</summary>
internal static class ModelsAnswer
{
    public static Task Rewrite(IPage page, string field, string json) => page.RouteAsync("**/v1/models", async route =>
    {
        var response = await route.FetchAsync();
        var root = System.Text.Json.Nodes.JsonNode.Parse(await response.TextAsync())!;
        root["models"]![0]![field] = System.Text.Json.Nodes.JsonNode.Parse(json);
        await route.FulfillAsync(new RouteFulfillOptions { Response = response, Body = root.ToJsonString() });
    });
}
