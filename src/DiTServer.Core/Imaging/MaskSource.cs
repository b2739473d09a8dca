namespace DiTServer.Core.Imaging;

/// <summary>Where a mask PNG says "redraw": white pixels (the native API, AUTOMATIC1111) or transparent ones (OpenAI's
/// <c>/v1/images/edits</c>).</summary>
public enum MaskSource
{
    /// <summary>Luminance ≥ 128 (white) is redrawn, darker is kept; alpha is ignored.</summary>
    Luminance,
    /// <summary>Alpha &lt; 128 (transparent) is redrawn, opaque is kept; colour is ignored.</summary>
    Transparency,
}
