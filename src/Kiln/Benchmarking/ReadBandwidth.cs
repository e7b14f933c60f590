namespace Kiln.Benchmarking;

/// <summary>What <see cref="ReadBandwidthProbe"/> measured: decimal GB/s (10^9 bytes per second), as membw.c prints.</summary>
public sealed record ReadBandwidth(long Bytes, int Passes, int Threads, double BestGBps, double MedianGBps, IReadOnlyList<double> PassGBps);
