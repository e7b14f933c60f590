namespace Kiln.Quantization;

/// <summary>
/// GPTQ settings of a <see cref="GgufQuantizer"/> run: the calibration Hessian of each weight's input (null for
/// weights without one, which are then rounded to nearest), the damping fraction and act-order.
/// </summary>
public sealed record GptqOptions(Func<string, double[]?> Hessian)
{
    /// <summary>Fraction of the mean diagonal added to H's diagonal (the paper's λ, 0.01).</summary>
    public double Damp { get; init; } = 0.01;

    /// <summary>Quantize columns in order of decreasing H diagonal (the most input energy first).</summary>
    public bool ActOrder { get; init; }

    /// <summary>Q4_0/Q5_0 block scales by <see cref="SymmetricScaleSearch"/> rather than the reference quantizer's.</summary>
    public bool SearchScales { get; init; } = true;
}
