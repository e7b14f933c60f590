namespace Kiln.Cli;

/// <summary>A user error the command reports as one line (bad flag value, unreadable input …).</summary>
internal sealed class CliException(string message) : Exception(message);
