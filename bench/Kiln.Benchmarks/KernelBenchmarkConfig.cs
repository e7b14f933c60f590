using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Kiln.Benchmarks;

/// <summary>
/// Short in-process runs: BenchmarkDotNet 0.14 predates .NET 10, and building a separate runner project per
/// benchmark is slow on a shared 2-core machine. Adds a GB/s column from the bytes each benchmark reports.
/// </summary>
public sealed class KernelBenchmarkConfig : ManualConfig
{
    public KernelBenchmarkConfig()
    {
        AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("short-inproc"));
        AddColumn(new ThroughputColumn());
    }

    private sealed class ThroughputColumn : IColumn
    {
        public string Id => "GBps";
        public string ColumnName => "GB/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "bytes of the row data the kernel reads (weights, or input floats for quantizers) per second";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null)
                return "-";
            var instance = (IKernelBenchmark)Activator.CreateInstance(benchmarkCase.Descriptor.Type)!;
            foreach (var p in benchmarkCase.Parameters.Items)
                benchmarkCase.Descriptor.Type.GetField(p.Name)?.SetValue(instance, p.Value);
            long bytes = instance.BytesRead(benchmarkCase.Descriptor.WorkloadMethod.Name);
            return (bytes / report.ResultStatistics.Mean).ToString("F2"); // bytes per ns = GB/s
        }

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
    }
}

/// <summary>Lets the throughput column ask a benchmark how many bytes one invocation reads.</summary>
public interface IKernelBenchmark
{
    long BytesRead(string method);
}
