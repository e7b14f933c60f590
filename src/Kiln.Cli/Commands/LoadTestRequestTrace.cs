namespace Kiln.Cli.Commands;

/// <summary>
/// What one measured request saw, for <c>kiln loadtest --trace</c>: percentiles say how bad the worst gaps are, a trace
/// says when they happened and to whom (e.g. whether they line up with other requests' prompts). Times in seconds.
/// </summary>
/// <param name="Index">The request's number in the run (0-based, after the warm-up).</param>
/// <param name="Start">When it was sent, from the start of the measured window.</param>
/// <param name="FirstToken">Time from sending to the first streamed text; null if none came.</param>
/// <param name="Arrivals">Time from sending to each streamed chunk that carried text (one value, the end, without streaming).</param>
/// <param name="Latency">Time from sending to the end of the response (or to the error).</param>
/// <param name="Tokens">Generated tokens the server reported.</param>
/// <param name="Error">Why it failed; null if it did not.</param>
internal sealed record LoadTestRequestTrace(int Index, double Start, double? FirstToken, IReadOnlyList<double> Arrivals, double Latency, int Tokens, string? Error);
