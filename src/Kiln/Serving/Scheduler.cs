using Kiln.Models.Llama;

namespace Kiln.Serving;

/// <summary>
/// Iteration-level scheduling (Orca; vLLM v1's unified form): every step gives each running sequence the tokens it
/// has not computed yet — one for a decoding sequence, a chunk for one still in its prompt — and then admits
/// waiting sequences first come, first served, all within <see cref="SchedulerOptions.MaxBatchTokens"/>. A long
/// prompt is thus cut into chunks that share steps with the running decodes instead of stalling them; while any
/// sequence decodes, the prompt tokens of a step are further held to <see cref="SchedulerOptions.MaxPrefillTokens"/>,
/// so that a burst of new prompts stretches the running streams' inter-token latency by a bounded amount per step
/// (vLLM's long-prefill threshold plays that part there). With nothing decoding, prompts take the whole budget.
/// </summary>
/// <remarks>
/// <para>KV blocks are allocated for exactly the tokens scheduled. When the pool runs dry, the youngest running
/// sequence is preempted by recompute: its blocks are released and it goes back to the front of the waiting queue,
/// to be prefilled again (prompt and generated tokens) when memory allows; its full blocks usually survive in the
/// prefix cache, so that recompute is often cheap. A step that preempts admits nobody.</para>
/// <para>On admission a sequence's leading full blocks are looked up in the prefix cache (hash chain of its tokens)
/// and reused; at least one token is always left to compute, since logits are needed. After the step has run,
/// <see cref="Commit"/> advances the computed counts and registers newly filled blocks in the cache.</para>
/// <para>Not thread-safe: the engine's loop thread owns it.</para>
/// </remarks>
public sealed class Scheduler
{
    private readonly KvBlockPool _pool;
    private readonly SchedulerOptions _options;
    private readonly List<ScheduledSequence> _running = [];
    private readonly LinkedList<ScheduledSequence> _waiting = [];
    private readonly Dictionary<long, ScheduledSequence> _byId = [];
    private long _nextId;
    private long _stepNumber;

    public Scheduler(KvBlockPool pool, SchedulerOptions options)
    {
        options.Validate();
        _pool = pool;
        _options = options;
    }

    public KvBlockPool Pool => _pool;
    public SchedulerOptions Options => _options;
    public int RunningCount => _running.Count;
    public int WaitingCount => _waiting.Count;
    public IReadOnlyList<ScheduledSequence> Running => _running;
    public IEnumerable<ScheduledSequence> Waiting => _waiting;

    /// <summary>Prompt tokens looked up in the prefix cache, and how many of them were found (vLLM counts tokens too).</summary>
    public long PrefixCacheQueries { get; private set; }
    public long PrefixCacheHits { get; private set; }
    public long Preemptions { get; private set; }

    /// <summary>Queues a sequence at the back of the waiting queue.</summary>
    public ScheduledSequence Add(IReadOnlyList<int> prompt, bool wantsHidden = false)
    {
        if (prompt.Count == 0)
            throw new ArgumentException("a sequence needs at least one token", nameof(prompt));
        var seq = new ScheduledSequence(_nextId++, prompt, _pool.BlockSize, _options.PrefixCaching && !wantsHidden, wantsHidden);
        _waiting.AddLast(seq);
        _byId.Add(seq.Id, seq);
        return seq;
    }

    public ScheduledSequence? Find(long id) => _byId.GetValueOrDefault(id);

    /// <summary>Plans the next step. Empty when nothing can run (no work, or the first waiting sequence does not fit).</summary>
    public SchedulerStep Schedule()
    {
        int budget = _options.MaxBatchTokens;
        var chunks = new List<PagedChunk>();
        var preempted = new List<long>();

        _stepNumber++;
        // Decodes first: a sequence readmitted after preemption is prefilling again and must not starve the streams.
        ScheduleRunning(decodes: true, ref budget, chunks, preempted);
        // A step costs about its token count, and every decoding stream waits for the whole step: with streams
        // decoding, prompt tokens are capped so that no step's inter-token latency is many decode steps long.
        if (chunks.Count > 0 && _options.MaxPrefillTokens > 0)
            budget = Math.Min(budget, _options.MaxPrefillTokens);
        ScheduleRunning(decodes: false, ref budget, chunks, preempted);

        while (preempted.Count == 0 && budget > 0 && _running.Count < _options.MaxSequences && _waiting.First is { } node)
        {
            var seq = node.Value;
            bool lookedUp = seq.ComputedTokens == 0 && seq.UsesPrefixCache;
            if (lookedUp)
                ReuseCachedPrefix(seq);
            int n = Math.Min(seq.TokenCount - seq.ComputedTokens, budget);
            if ((lookedUp && NextBlockIsBeingComputed(seq)) || !TryAllocate(seq, n))
            {
                // Give the reused blocks back so they stay evictable while this sequence waits.
                _pool.ReleaseAll(seq.Blocks);
                seq.ComputedTokens = 0;
                seq.RegisteredBlocks = 0;
                break;
            }
            if (lookedUp)
            {
                PrefixCacheQueries += seq.TokenCount;
                PrefixCacheHits += seq.ComputedTokens;
            }
            seq.ScheduledInStep = _stepNumber;
            _waiting.RemoveFirst();
            seq.Status = SequenceStatus.Running;
            _running.Add(seq);
            chunks.Add(MakeChunk(seq, n));
            budget -= n;
        }

        return new SchedulerStep(chunks, preempted);
    }

    private void ScheduleRunning(bool decodes, ref int budget, List<PagedChunk> chunks, List<long> preempted)
    {
        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            var seq = _running[i];
            int remaining = seq.TokenCount - seq.ComputedTokens;
            if (remaining <= 0 || (remaining == 1) != decodes)
                continue;
            int n = Math.Min(remaining, budget);
            bool scheduled = true;
            while (!TryAllocate(seq, n))
            {
                var victim = YoungestUnscheduled(seq);
                bool before = _running.IndexOf(victim) < i;
                Preempt(victim);
                preempted.Add(victim.Id);
                if (victim == seq)
                {
                    scheduled = false;
                    break;
                }
                if (before)
                    i--; // keep pointing at seq
            }
            if (!scheduled)
            {
                i--; // the list moved up under this index
                continue;
            }
            seq.ScheduledInStep = _stepNumber;
            chunks.Add(MakeChunk(seq, n));
            budget -= n;
        }
    }

    /// <summary>The youngest running sequence not already part of this step, other than <paramref name="asking"/>; else <paramref name="asking"/> itself.</summary>
    private ScheduledSequence YoungestUnscheduled(ScheduledSequence asking)
    {
        for (int i = _running.Count - 1; i >= 0; i--)
        {
            var candidate = _running[i];
            if (candidate != asking && candidate.ScheduledInStep != _stepNumber)
                return candidate;
        }
        return asking;
    }

    /// <summary>Marks the step's chunks computed and registers the blocks they filled in the prefix cache.</summary>
    public void Commit(SchedulerStep step)
    {
        foreach (var chunk in step.Chunks)
        {
            if (!_byId.TryGetValue(chunk.SequenceId, out var seq))
                continue; // finished while the step ran
            seq.ComputedTokens = chunk.EndPosition;
            int full = seq.ComputedTokens / _pool.BlockSize;
            for (int b = seq.RegisteredBlocks; b < full; b++)
                _pool.Register(seq.Blocks[b], seq.HashOfBlock(b));
            seq.RegisteredBlocks = Math.Max(seq.RegisteredBlocks, full);
        }
    }

    /// <summary>Removes a sequence (done, cancelled or failed) wherever it is and frees its blocks at once.</summary>
    public void Finish(ScheduledSequence seq)
    {
        if (seq.Status == SequenceStatus.Finished)
            return;
        if (seq.Status == SequenceStatus.Running)
            _running.Remove(seq);
        else
            _waiting.Remove(seq);
        _pool.ReleaseAll(seq.Blocks);
        seq.Status = SequenceStatus.Finished;
        _byId.Remove(seq.Id);
    }

    /// <summary>
    /// True when a running sequence is still computing the next full block of <paramref name="seq"/>'s prefix (the
    /// same prompt sent n times, or several requests arriving together with one system prompt): waiting for it to be
    /// cached costs a step or a few, recomputing it costs the whole shared prefix again.
    /// </summary>
    private bool NextBlockIsBeingComputed(ScheduledSequence seq)
    {
        int bs = _pool.BlockSize;
        int next = seq.ComputedTokens / bs;
        if ((next + 1) * bs > seq.TokenCount - 1)
            return false; // not a block the cache could give it
        var hash = seq.HashOfBlock(next);
        foreach (var other in _running)
        {
            if (other.UsesPrefixCache && other.RegisteredBlocks <= next && (next + 1) * bs <= other.TokenCount && other.HashOfBlock(next) == hash)
                return true;
        }
        return false;
    }

    private void ReuseCachedPrefix(ScheduledSequence seq)
    {
        int bs = _pool.BlockSize;
        // Leave the last token to compute: its logits are what the sequence is waiting for.
        int candidates = (seq.TokenCount - 1) / bs;
        int hits = 0;
        for (int b = 0; b < candidates; b++)
        {
            int block = _pool.TryReuse(seq.HashOfBlock(b));
            if (block < 0)
                break;
            seq.Blocks.Append(block);
            hits++;
        }
        seq.ComputedTokens = hits * bs;
        seq.RegisteredBlocks = hits;
    }

    /// <summary>Gives the sequence blocks for its next <paramref name="n"/> tokens, all or nothing.</summary>
    private bool TryAllocate(ScheduledSequence seq, int n)
    {
        int bs = _pool.BlockSize;
        int needed = (seq.ComputedTokens + n + bs - 1) / bs - seq.Blocks.Count;
        if (needed <= 0)
            return true;
        if (_pool.AvailableBlocks < needed)
            return false;
        for (int i = 0; i < needed; i++)
            seq.Blocks.Append(_pool.Allocate());
        return true;
    }

    private void Preempt(ScheduledSequence seq)
    {
        _running.Remove(seq);
        _pool.ReleaseAll(seq.Blocks);
        seq.ComputedTokens = 0;
        seq.RegisteredBlocks = 0;
        seq.Status = SequenceStatus.Waiting;
        seq.Preemptions++;
        Preemptions++;
        _waiting.AddFirst(seq);
    }

    private PagedChunk MakeChunk(ScheduledSequence seq, int n)
    {
        int start = seq.ComputedTokens;
        var tokens = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq.TokenList).Slice(start, n).ToArray();
        bool last = start + n == seq.TokenCount;
        var output = seq.WantsHidden ? PagedOutput.Hidden : last ? PagedOutput.Logits : PagedOutput.None;
        return new PagedChunk(seq.Id, tokens, start, seq.Blocks.ToArray(), output);
    }
}
