namespace Kiln.Inference.Text;

/// <summary>
/// Finds stop strings in streamed text. Each decoded chunk goes through <see cref="Append"/>, which releases only
/// text that can no longer turn out to be part of a stop string; the longest tail that is still a prefix of some stop
/// string is held back until later chunks decide it. Stop strings are therefore found across chunk boundaries, and
/// the released text is the same however the stream is cut into chunks.
/// </summary>
/// <remarks>
/// The stop fires at the stop-string occurrence that <em>ends</em> first in the stream (the longest one if several
/// end at the same character), because that is the first point at which a streaming reader knows a stop string has
/// appeared. The text before that occurrence is released, the stop string and everything after it are not.
/// After a stop, <see cref="Append"/> throws until <see cref="Reset"/>. The span handed out by
/// <see cref="Append"/> or <see cref="Flush"/> points into an internal buffer and is valid until the next call;
/// the buffer only grows when a chunk larger than any before arrives, so steady-state streaming allocates nothing.
/// </remarks>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private char[] _buffer;
    private int _heldStart;
    private int _heldLength;
    private bool _stopped;

    public StopStringMatcher(IReadOnlyList<string> stopStrings)
    {
        ArgumentNullException.ThrowIfNull(stopStrings);
        _stops = new string[stopStrings.Count];
        int longest = 0;
        for (int i = 0; i < _stops.Length; i++)
        {
            string? s = stopStrings[i];
            if (string.IsNullOrEmpty(s))
                throw new ArgumentException($"Stop string {i} is {(s is null ? "null" : "empty")}; stop strings must be non-empty.", nameof(stopStrings));
            _stops[i] = s;
            longest = Math.Max(longest, s.Length);
        }
        _buffer = new char[Math.Max(256, 2 * longest)];
    }

    public IReadOnlyList<string> StopStrings => _stops;

    /// <summary>True once a stop string has been matched.</summary>
    public bool Stopped => _stopped;

    /// <summary>The stop string that matched, or null.</summary>
    public string? MatchedStopString { get; private set; }

    /// <summary>
    /// Feeds a chunk. Returns true when a stop string completed: <paramref name="emit"/> then holds the text
    /// before it that had not been released yet. Otherwise <paramref name="emit"/> holds the text now known to be
    /// free of stop strings (possibly empty).
    /// </summary>
    public bool Append(ReadOnlySpan<char> chunk, out ReadOnlySpan<char> emit)
    {
        if (_stopped)
            throw new InvalidOperationException("A stop string has already been matched; call Reset before appending more text.");

        // Move the held tail to the front (deferred to now: the previous call's emitted span pointed before it).
        int total = _heldLength + chunk.Length;
        if (total > _buffer.Length)
        {
            var grown = new char[Math.Max(total, 2 * _buffer.Length)];
            _buffer.AsSpan(_heldStart, _heldLength).CopyTo(grown);
            _buffer = grown;
        }
        else if (_heldStart != 0)
        {
            _buffer.AsSpan(_heldStart, _heldLength).CopyTo(_buffer);
        }
        _heldStart = 0;
        chunk.CopyTo(_buffer.AsSpan(_heldLength));
        ReadOnlySpan<char> text = _buffer.AsSpan(0, total);

        // The earliest-ending occurrence; among equal ends the longest. The held tail cannot contain a whole stop
        // string (it would have fired already), and every occurrence starts inside the held tail or the chunk,
        // since the held tail was the longest suffix that could begin one.
        int bestEnd = int.MaxValue;
        int bestStart = 0;
        string? bestStop = null;
        foreach (string stop in _stops)
        {
            int at = text.IndexOf(stop.AsSpan(), StringComparison.Ordinal);
            if (at < 0)
                continue;
            int end = at + stop.Length;
            if (end < bestEnd || (end == bestEnd && at < bestStart))
            {
                bestEnd = end;
                bestStart = at;
                bestStop = stop;
            }
        }
        if (bestStop is not null)
        {
            _stopped = true;
            MatchedStopString = bestStop;
            _heldLength = 0;
            emit = text[..bestStart];
            return true;
        }

        int hold = LongestSuffixThatPrefixesAStop(text);
        _heldStart = total - hold;
        _heldLength = hold;
        emit = text[..(total - hold)];
        return false;
    }

    /// <summary>At the end of the stream: releases the held-back text (empty after a stop).</summary>
    public ReadOnlySpan<char> Flush()
    {
        ReadOnlySpan<char> held = _buffer.AsSpan(_heldStart, _heldLength);
        _heldLength = 0;
        return held;
    }

    /// <summary>Forgets held text and any match, ready for a new stream.</summary>
    public void Reset()
    {
        _heldStart = 0;
        _heldLength = 0;
        _stopped = false;
        MatchedStopString = null;
    }

    private int LongestSuffixThatPrefixesAStop(ReadOnlySpan<char> text)
    {
        int best = 0;
        foreach (string stop in _stops)
        {
            // Only proper prefixes: a whole stop string would have matched above.
            for (int length = Math.Min(stop.Length - 1, text.Length); length > best; length--)
            {
                if (text[^length..].SequenceEqual(stop.AsSpan(0, length)))
                {
                    best = length;
                    break;
                }
            }
        }
        return best;
    }
}
