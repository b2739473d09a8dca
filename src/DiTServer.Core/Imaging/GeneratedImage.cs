namespace DiTServer.Core.Imaging;

/// <summary>One finished image: its pixels (HWC), its PNG and what made it.</summary>
public sealed record GeneratedImage(int Index, long Seed, int ClassLabel, string ClassName, byte[] Hwc, int Width, int Height, int Channels, byte[] Png);
