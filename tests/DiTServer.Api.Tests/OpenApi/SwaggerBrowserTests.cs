namespace DiTServer.Api.Tests;

/// <summary>Swagger UI's "Try it out" in headless Chromium against a real Kestrel server: the example body is sent as
/// it is, and the response media-type selector ("Controls Accept header") really sets Accept.</summary>
public sealed class SwaggerBrowserTests
{
    [ChromiumFact]
    public async Task Try_it_out_on_v1_images_sends_the_example_and_the_chosen_accept()
    {
        using var factory = new ServerFactory(("Serving:MaxBatchRows", "16"));
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        await factory.WaitFor(s => s.Ready, "warm-up");
        var page = await session.Browser.NewPageAsync();
        var sent = new List<(string Accept, string Body)>();
        page.Request += (_, r) =>
        {
            if (r.Method == "POST" && r.Url.EndsWith("/v1/images", StringComparison.Ordinal))
                sent.Add((r.Headers.GetValueOrDefault("accept") ?? "", r.PostData ?? ""));
        };
        await page.GotoAsync(address + "/swagger/index.html");
        var operation = page.Locator("#operations-Images-GenerateImages");
        await operation.Locator(".opblock-summary").ClickAsync();
        await operation.Locator(".try-out__btn").ClickAsync();
        var select = operation.Locator(".responses-wrapper select").First;
        var shown = await select.InputValueAsync();
        var response = page.WaitForResponseAsync(r => r.Url.EndsWith("/v1/images", StringComparison.Ordinal));
        await operation.Locator("button.execute").ClickAsync();
        Assert.StartsWith(shown, (await response).Headers["content-type"]); // what the page shows is what comes back
        await select.SelectOptionAsync("image/png");
        response = page.WaitForResponseAsync(r => r.Url.EndsWith("/v1/images", StringComparison.Ordinal));
        await operation.Locator("button.execute").ClickAsync();
        await response;
        await select.SelectOptionAsync("application/json");
        response = page.WaitForResponseAsync(r => r.Url.EndsWith("/v1/images", StringComparison.Ordinal));
        await operation.Locator("button.execute").ClickAsync();
        var answer = await response;
        // Before the interceptor the first request went out with */* (and got a PNG) while the page showed JSON.
        Assert.Equal([shown, "image/png", "application/json"], sent.Select(s => s.Accept).ToArray());
        Assert.All(sent, s => Assert.Contains("\"class_label\": 3", s.Body));
        Assert.Equal(200, answer.Status);
        Assert.StartsWith("application/json", answer.Headers["content-type"]);
    }
}
