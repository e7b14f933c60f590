namespace Kiln.Cli;

/// <summary>The streams a command talks to; tests pass their own.</summary>
internal sealed record CliIO(TextReader In, TextWriter Out, TextWriter Error);
