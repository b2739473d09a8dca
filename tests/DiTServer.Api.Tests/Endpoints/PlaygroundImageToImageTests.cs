using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Api.Tests;

/// <summary>The playground's image to image in headless Chromium: a picture uploaded (and one dropped), the strength
/// slider, a mask painted with the mouse; the job carries init_image, strength and mask, and the result is shown beside
/// its input.</summary>
public sealed class PlaygroundImageToImageTests
{
    [ChromiumFact]
    public async Task Upload_slider_and_painted_mask_reach_the_job_and_the_result_shows_beside_the_input()
    {
        using var factory = new ServerFactory(("Serving:MaxBatchRows", "16"));
        await using var session = await BrowserSession.StartAsync(factory);
        var address = session.Address;
        await factory.WaitFor(s => s.Ready, "warm-up");
        int size = JsonDocument.Parse(await factory.CreateClient().GetStringAsync("/v1/models")).RootElement
            .GetProperty("models")[0].GetProperty("image_size").GetInt32();

        var browser = session.Browser;
        var page = await browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1000, Height = 900 } });
        var consoleErrors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error") consoleErrors.Add(m.Text); };
        var sentBodies = new List<string>();
        await page.RouteAsync("**/v1/jobs", async route =>
        {
            if (route.Request.Method == "POST") sentBodies.Add(route.Request.PostData ?? "");
            await route.ContinueAsync();
        });
        await page.GotoAsync(address + "/");
        await page.WaitForFunctionAsync("document.querySelectorAll('#class option').length > 0");
        Assert.False(await page.IsVisibleAsync("#init-stack"));
        Assert.True(await page.IsDisabledAsync("#strength"), "the strength slider is live without an image");

        // Drop: a picture dropped on the zone loads like an upload.
        await page.EvaluateAsync("""
            async (b64) => {
              const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              const data = new DataTransfer();
              data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
              document.getElementById("init-drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
            }
            """, Convert.ToBase64String(TestPngs.Picture(size, size)));
        await page.Locator("#init-stack").WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Visible });
        await page.ClickAsync("#remove-init");
        Assert.False(await page.IsVisibleAsync("#init-stack"));

        // Upload: twice the model's size, so the page scales it to the model's.
        var upload = new FilePayload { Name = "picture.png", MimeType = "image/png", Buffer = TestPngs.Picture(2 * size, 2 * size) };
        await page.SetInputFilesAsync("#init-file", upload);
        await page.Locator("#init-stack").WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Visible });
        await page.FillAsync("#strength", "0.5");
        Assert.Equal("0.50", await page.TextContentAsync("#strength-value"));

        // Paint the left third of the middle row with the mouse.
        var box = (await page.Locator("#mask-canvas").BoundingBoxAsync())!;
        await page.Mouse.MoveAsync(box.X + box.Width * 0.05f, box.Y + box.Height * 0.5f);
        await page.Mouse.DownAsync();
        await page.Mouse.MoveAsync(box.X + box.Width * 0.2f, box.Y + box.Height * 0.5f, new MouseMoveOptions { Steps = 4 });
        await page.Mouse.MoveAsync(box.X + box.Width * 0.33f, box.Y + box.Height * 0.5f, new MouseMoveOptions { Steps = 4 });
        await page.Mouse.UpAsync();

        await page.SelectOptionAsync("#class", "3");
        await page.FillAsync("#steps-number", "6");
        await page.FillAsync("#count", "1");
        await page.ClickAsync("#generate");
        await page.Locator("#results figure:not(.input) img:not(.preview)").First.WaitForAsync(new LocatorWaitForOptions { Timeout = 60_000 });
        Assert.Equal("Done.", await page.TextContentAsync("#status"));
        Assert.False(await page.IsVisibleAsync("#error"), await page.TextContentAsync("#error"));

        // The result stands beside its input, whose caption says it was masked.
        Assert.Equal("input · mask", await page.TextContentAsync("#results figure.input figcaption"));
        Assert.Equal(2, await page.Locator("#results img").CountAsync());
        Assert.True(await page.EvalOnSelectorAsync<bool>("#results figure:not(.input) img", "img => img.complete && img.naturalWidth > 0"));

        var sent = JsonDocument.Parse(Assert.Single(sentBodies)).RootElement;
        Assert.Equal(0.5, sent.GetProperty("strength").GetDouble());
        using var initImage = SixLabors.ImageSharp.Image.Load<Rgb24>(Convert.FromBase64String(sent.GetProperty("init_image").GetString()!));
        Assert.Equal((size, size), (initImage.Width, initImage.Height));
        using var mask = SixLabors.ImageSharp.Image.Load<L8>(Convert.FromBase64String(sent.GetProperty("mask").GetString()!));
        Assert.Equal((size, size), (mask.Width, mask.Height));
        Assert.Equal(255, mask[size / 6, size / 2].PackedValue);       // painted: redrawn
        Assert.Equal(0, mask[size - 2, size / 2].PackedValue);         // right edge: kept
        Assert.Equal(0, mask[size / 6, 1].PackedValue);                // top edge: kept
        Assert.Empty(consoleErrors);
    }
}
