namespace Kiln.Benchmarks;

/// <summary>Which implementation of a kernel a benchmark runs.</summary>
public enum KernelPath
{
    Scalar,
    Avx2,
    Avx512,
}
