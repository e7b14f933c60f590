namespace Kiln.Quantization;

/// <summary>What <see cref="LayerwiseGptq"/> calibrates with.</summary>
public sealed record GptqCalibration(string Text)
{
    /// <summary>Tokens per calibration chunk; 0 = min(512, the model's context length).</summary>
    public int ContextLength { get; init; }

    /// <summary>Calibration chunks (the paper's 128 samples).</summary>
    public int Samples { get; init; } = 128;

    public double Damp { get; init; } = 0.01;

    public bool ActOrder { get; init; }

    /// <summary>Q4_0/Q5_0 block scales by <see cref="SymmetricScaleSearch"/> rather than the reference quantizer's.</summary>
    public bool SearchScales { get; init; } = true;
}
