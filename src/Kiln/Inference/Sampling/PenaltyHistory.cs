namespace Kiln.Inference.Sampling;

/// <summary>
/// The last N accepted tokens (a ring buffer) with a per-token occurrence count, and the repetition, frequency
/// and presence penalties llama.cpp's <c>penalties</c> sampler applies from them. Counts live in a vocab-sized
/// array, so applying the penalties costs O(N) and allocates nothing.
/// </summary>
internal sealed class PenaltyHistory
{
    private readonly int[] _ring;
    private readonly int[] _counts;
    private int _start;
    private int _length;

    public PenaltyHistory(int lastN, int vocabSize)
    {
        _ring = new int[lastN];
        _counts = new int[vocabSize];
    }

    public int Length => _length;

    /// <summary>How many times <paramref name="token"/> occurs in the window.</summary>
    public int CountOf(int token) => _counts[token];

    public void Accept(int token)
    {
        if (_ring.Length == 0)
            return;
        if (_length == _ring.Length)
        {
            // Full: the oldest token leaves the window as the new one enters.
            _counts[_ring[_start]]--;
            _ring[_start] = token;
            _start = _start + 1 == _ring.Length ? 0 : _start + 1;
        }
        else
        {
            int end = _start + _length;
            _ring[end >= _ring.Length ? end - _ring.Length : end] = token;
            _length++;
        }
        _counts[token]++;
    }

    public void Clear()
    {
        for (int i = 0; i < _length; i++)
            _counts[_ring[(_start + i) % _ring.Length]] = 0;
        _start = 0;
        _length = 0;
    }

    /// <summary>
    /// Penalises each distinct token of the window once, exactly as llama.cpp does:
    /// <c>logit = logit &lt;= 0 ? logit * repeat : logit / repeat; logit -= count * freq + (count &gt; 0) * presence</c>.
    /// </summary>
    public void Apply(Span<float> logits, float repeat, float frequency, float presence)
    {
        int cap = _ring.Length;
        // A token may sit in the window several times but must be penalised once: its count is negated while
        // it is being handled, marking it done, and restored in a second pass.
        for (int i = 0, p = _start; i < _length; i++, p = p + 1 == cap ? 0 : p + 1)
        {
            int token = _ring[p];
            int count = _counts[token];
            if (count <= 0)
                continue;
            float logit = logits[token];
            logit = logit <= 0f ? logit * repeat : logit / repeat;
            logit -= count * frequency + presence;
            logits[token] = logit;
            _counts[token] = -count;
        }
        for (int i = 0, p = _start; i < _length; i++, p = p + 1 == cap ? 0 : p + 1)
        {
            int token = _ring[p];
            if (_counts[token] < 0)
                _counts[token] = -_counts[token];
        }
    }
}
