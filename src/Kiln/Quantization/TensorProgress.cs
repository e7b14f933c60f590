namespace Kiln.Quantization;

/// <summary>Reported after each tensor is written: the tensor's plan and its place in the file (1-based).</summary>
public readonly record struct TensorProgress(TensorQuantization Tensor, int Number, int Total);
