namespace Kiln.Tests.TestSupport;

/// <summary>
/// Tests that keep every core busy for seconds (whole-text perplexity runs). xunit runs this
/// collection alone, after the parallel ones: run beside other tests, their spinning worker pools
/// oversubscribe the cores, slow the suite and disturb timing- and allocation-sensitive tests.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WholeMachineCollection
{
    public const string Name = "whole machine";
}
