namespace DiTServer.Core.Sampling.Solvers;

/// <summary>UniPC's choice of B(h) (Zhao et al. 2023, arXiv 2302.04867, Section 3.3 and Appendix): the
/// <c>variant</c> argument of uni_pc.py.</summary>
public enum UniPcVariant
{
    /// <summary>B(h) = h: the authors' choice for unconditional or weakly guided sampling.</summary>
    Bh1,
    /// <summary>B(h) = e^h − 1: the authors' choice for guided sampling (our default).</summary>
    Bh2,
}
