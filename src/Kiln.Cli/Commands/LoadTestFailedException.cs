namespace Kiln.Cli.Commands;

/// <summary>A load test that could not be run at all (its warm-up request failed), as opposed to one with failed requests.</summary>
internal sealed class LoadTestFailedException(string message, Exception inner) : Exception(message, inner);
