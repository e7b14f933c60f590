using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Kiln.Inference.Sampling;
using Kiln.Models.Llama;
using Kiln.Threading;
using Kiln.Tokenizers;

namespace Kiln.Serving;

/// <summary>
/// Continuous-batching engine over a Llama-family model: a <see cref="Scheduler"/> over a paged KV cache
/// (<see cref="KvBlockPool"/> + <see cref="PagedKvCache"/>) feeding a <see cref="LlamaBatchRunner"/>, driven by one
/// dedicated loop thread that runs steps while there is work and sleeps on a signal otherwise. Callers on any thread
/// submit through <see cref="GenerateAsync"/> / <see cref="EmbedAsync"/>; results flow back through per-sequence
/// channels written by the loop.
/// </summary>
/// <remarks>
/// Because the runner is batch invariant, a sequence's tokens do not depend on what else is running: greedy output is
/// the same alone, batched, chunked, preempted and recomputed, or served from the prefix cache.
/// </remarks>
public sealed class LlamaEngine : IInferenceEngine
{
    private readonly LlamaModel _model;
    private readonly bool _ownsModel;
    private readonly LlamaEngineOptions _options;
    private readonly WorkerPool _pool;
    private readonly PagedKvCache _cache;
    private readonly KvBlockPool _blocks;
    private readonly Scheduler _scheduler;
    private readonly LlamaBatchRunner _runner;
    private readonly HashSet<int> _endOfGeneration;
    private readonly ConcurrentQueue<EngineSequence> _inbox = new();
    private readonly Dictionary<long, EngineSequence> _live = [];
    // Never disposed: a caller's token may still fire a cancellation after the engine is gone, and Set must not throw then.
    private readonly AutoResetEvent _wake = new(false);
    private readonly Thread _loop;
    private readonly float[] _logits;
    private readonly float[] _hidden;
    private readonly object _metricsGate = new();
    private readonly object _submitGate = new();
    private EngineMetrics _metrics;
    private int _pendingAdmission;
    private long _promptTokens;
    private long _generatedTokens;
    private volatile bool _stopping;
    private int _disposed;

    public LlamaEngine(LlamaModel model, Tokenizer tokenizer, LlamaEngineOptions? options = null)
        : this(model, tokenizer, options, ownsModel: false)
    {
    }

    private LlamaEngine(LlamaModel model, Tokenizer tokenizer, LlamaEngineOptions? options, bool ownsModel)
    {
        options ??= new LlamaEngineOptions();
        options.Validate();
        _model = model;
        _ownsModel = ownsModel;
        _options = options;
        Tokenizer = tokenizer;
        var c = model.Config;
        if (tokenizer.VocabSize > c.VocabSize)
            throw new ArgumentException($"the tokenizer has {tokenizer.VocabSize} tokens, the model only {c.VocabSize}", nameof(tokenizer));
        ModelName = options.ModelName ?? model.File.TryGetString("general.name") ?? Path.GetFileNameWithoutExtension(model.File.Path);

        int ctx = options.ContextLength > 0 ? options.ContextLength : Math.Min(c.ContextLength, LlamaContextOptions.DefaultMaxContext);
        int blockSize = KvBlockPool.DefaultBlockSize;
        int blocks = options.KvCacheBlocks;
        if (blocks == 0)
        {
            long budget = options.KvCacheMegabytes > 0
                ? options.KvCacheMegabytes * (1L << 20)
                : Math.Min(1L << 30, PagedKvCache.BlockBytes(c.BlockCount, c.KvDim, blockSize, options.KvCacheType) * options.MaxSequences * ((ctx + blockSize - 1) / blockSize));
            blocks = PagedKvCache.BlocksForBudget(budget, c.BlockCount, c.KvDim, blockSize, options.KvCacheType);
        }
        // A sequence alone must always fit, or preempting it would only requeue it forever.
        ContextLength = Math.Min(ctx, blocks * blockSize);

        _pool = new WorkerPool(options.Threads > 0 ? options.Threads : WorkerPool.DefaultThreadCount());
        try
        {
            _cache = new PagedKvCache(c.BlockCount, c.KvDim, blocks, blockSize, options.KvCacheType);
            _blocks = new KvBlockPool(blocks, blockSize);
            _scheduler = new Scheduler(_blocks, new SchedulerOptions
            {
                MaxSequences = options.MaxSequences,
                MaxBatchTokens = options.MaxBatchTokens,
                MaxPrefillTokens = options.MaxPrefillTokens,
                PrefixCaching = options.PrefixCaching,
            });
            _runner = new LlamaBatchRunner(model, _cache, _pool, options.MaxBatchTokens, ContextLength);
        }
        catch
        {
            _cache?.Dispose();
            _pool.Dispose();
            throw;
        }
        _endOfGeneration = [.. tokenizer.EndOfGenerationIds.ToArray()];
        _logits = new float[Math.Min(options.MaxSequences, options.MaxBatchTokens) * c.VocabSize];
        _hidden = new float[options.MaxBatchTokens * c.EmbeddingLength];
        _metrics = new EngineMetrics { KvBlocksTotal = blocks };
        _loop = new Thread(Loop) { IsBackground = true, Name = "kiln-engine" };
        _loop.Start();
    }

    /// <summary>Opens a GGUF model and its tokenizer; the engine owns and disposes them.</summary>
    public static LlamaEngine Load(string path, LlamaEngineOptions? options = null)
    {
        var model = LlamaModel.Load(path);
        try
        {
            return new LlamaEngine(model, Tokenizer.FromGguf(model.File), options, ownsModel: true);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public Tokenizer Tokenizer { get; }
    public string ModelName { get; }
    public int ContextLength { get; }
    public int EmbeddingLength => _model.Config.EmbeddingLength;
    public LlamaEngineOptions Options => _options;

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(EngineRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(request.MaxTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(request.TopLogprobs);
        CheckPrompt(request.Prompt, extra: 1);
        var sampler = new Sampler(request.Sampling, _model.Config.VocabSize);
        // Penalties look at the prompt too, as llama-server's do.
        foreach (int token in request.Prompt)
            sampler.Accept(token);
        int capacity = Math.Min(request.MaxTokens, ContextLength) + 2;
        var seq = new EngineSequence(request, sampler, capacity);
        Submit(seq);

        using var registration = cancellationToken.Register(static s => ((LlamaEngine)((object[])s!)[0]).RequestCancel((EngineSequence)((object[])s!)[1]), new object[] { this, seq });
        var reader = seq.Output!.Reader;
        bool finished = false;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (reader.TryRead(out var item))
                {
                    if (item.FinishReason is not null)
                        finished = true;
                    yield return item;
                    if (finished)
                        yield break;
                }
            }
        }
        finally
        {
            // Leaving early (break, dispose, an exception in the consumer) frees the sequence at the next step.
            if (!finished)
                RequestCancel(seq);
        }
    }

    public async Task<float[]> EmbedAsync(IReadOnlyList<int> tokens, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        CheckPrompt(tokens, extra: 0);
        var seq = new EngineSequence(tokens, EmbeddingLength);
        Submit(seq);
        using var registration = cancellationToken.Register(static s => ((LlamaEngine)((object[])s!)[0]).RequestCancel((EngineSequence)((object[])s!)[1]), new object[] { this, seq });
        try
        {
            return await seq.Embedding!.Task.ConfigureAwait(false);
        }
        catch (TaskCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    public EngineMetrics GetMetrics()
    {
        lock (_metricsGate)
            return _metrics with { WaitingSequences = _metrics.WaitingSequences + _pendingAdmission };
    }

    private void CheckPrompt(IReadOnlyList<int> prompt, int extra)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0)
            throw new ArgumentException("the prompt has no tokens", nameof(prompt));
        int vocab = _model.Config.VocabSize;
        foreach (int id in prompt)
        {
            if ((uint)id >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(prompt), id, $"token id outside the vocabulary of {vocab}");
        }
        if (prompt.Count + extra > ContextLength)
            throw new EngineRejectedException(EngineRejection.PromptTooLong,
                $"the prompt has {prompt.Count} tokens; the context holds {ContextLength}{(extra > 0 ? " including at least one generated token" : "")}");
    }

    private void Submit(EngineSequence seq)
    {
        lock (_submitGate)
        {
            // Under the gate, so that the loop's final sweep sees every request admitted before the stop.
            if (_stopping)
                throw new EngineRejectedException(EngineRejection.ShuttingDown, "the engine is shutting down");
            Enqueue(seq);
        }
        Wake();
    }

    private void Enqueue(EngineSequence seq)
    {
        // The inbox count and the loop's waiting count change together under the gate (see Admit), so a request
        // moving from one to the other is never counted twice or missed.
        lock (_metricsGate)
        {
            if (_pendingAdmission + _metrics.WaitingSequences >= _options.MaxWaiting)
                throw new EngineRejectedException(EngineRejection.QueueFull, $"{_options.MaxWaiting} requests are already waiting");
            _pendingAdmission++;
        }
        _inbox.Enqueue(seq);
    }

    private void Wake() => _wake.Set();

    private void RequestCancel(EngineSequence seq)
    {
        if (seq.Cancel())
            Wake();
    }

    private void Loop()
    {
        while (!_stopping)
        {
            try
            {
                Admit();
                DropCancelled();
                if (_live.Count == 0)
                {
                    PublishMetrics();
                    _wake.WaitOne();
                    continue;
                }
                var step = _scheduler.Schedule();
                if (step.IsEmpty)
                {
                    PublishMetrics();
                    _wake.WaitOne(1);
                    continue;
                }
                // Published before the step runs too: a request admitted and scheduled in this iteration would
                // otherwise still count as waiting (and against MaxWaiting) for the whole step.
                PublishMetrics();
                _runner.Run(step.Chunks, _logits, _hidden);
                _scheduler.Commit(step);
                Deliver(step);
                PublishMetrics();
            }
            catch (Exception e)
            {
                FailAll(e);
            }
        }
        CancelAll();
    }

    private void Admit()
    {
        while (_inbox.TryDequeue(out var seq))
        {
            lock (_metricsGate)
            {
                _pendingAdmission--;
                if (!seq.IsCancelled)
                    _metrics = _metrics with { WaitingSequences = _metrics.WaitingSequences + 1 };
            }
            if (seq.IsCancelled)
            {
                Complete(seq, EngineFinishReason.Cancelled);
                continue;
            }
            seq.Scheduled = _scheduler.Add(seq.Prompt, wantsHidden: seq.Embedding is not null);
            _live.Add(seq.Scheduled.Id, seq);
            if (seq.Embedding is null)
                _promptTokens += seq.Prompt.Count;
        }
    }

    private void DropCancelled()
    {
        List<EngineSequence>? cancelled = null;
        foreach (var seq in _live.Values)
        {
            if (seq.IsCancelled)
                (cancelled ??= []).Add(seq);
        }
        if (cancelled is null)
            return;
        foreach (var seq in cancelled)
            Complete(seq, EngineFinishReason.Cancelled);
    }

    private void Deliver(SchedulerStep step)
    {
        int vocab = _model.Config.VocabSize;
        int dim = EmbeddingLength;
        int logitRow = 0, hiddenRow = 0;
        foreach (var chunk in step.Chunks)
        {
            var seq = _live[chunk.SequenceId];
            switch (chunk.Output)
            {
                case PagedOutput.Logits:
                    try
                    {
                        Sample(seq, _logits.AsSpan(logitRow++ * vocab, vocab));
                    }
                    catch (Exception e) when (!seq.Done)
                    {
                        // A constraint that masks every token (or throws) fails its own sequence, not the step.
                        Release(seq);
                        seq.Output!.Writer.TryComplete(e);
                    }
                    break;
                case PagedOutput.Hidden:
                    for (int t = 0; t < chunk.Tokens.Length; t++)
                    {
                        var row = _hidden.AsSpan(hiddenRow++ * dim, dim);
                        for (int d = 0; d < dim; d++)
                            seq.EmbeddingSum![d] += row[d];
                    }
                    seq.EmbeddedRows += chunk.Tokens.Length;
                    if (seq.Scheduled!.IsCaughtUp)
                        FinishEmbedding(seq);
                    break;
            }
        }
    }

    private void Sample(EngineSequence seq, Span<float> logits)
    {
        var request = seq.Request!;
        request.Constraint?.Mask(logits);
        int token = seq.Sampler!.Sample(logits); // applies the penalties to the logits in place
        seq.Sampler.Accept(token);
        request.Constraint?.Accept(token);

        float logprob = TokenLogprobs.LogSoftmaxOf(logits, token, out float max, out float logSum);
        var top = request.TopLogprobs > 0 ? TokenLogprobs.Top(logits, request.TopLogprobs, max, logSum) : [];

        if (_endOfGeneration.Contains(token) && !request.IgnoreEndOfGeneration)
        {
            Complete(seq, EngineFinishReason.EndOfGeneration);
            return;
        }
        seq.Generated++;
        _generatedTokens++;
        var scheduled = seq.Scheduled!;
        scheduled.Append(token);
        // A complete constraint admits only an end-of-generation token next: end now rather than spend a step on it.
        EngineFinishReason? reason = request.Constraint is { IsComplete: true } ? EngineFinishReason.EndOfGeneration
            : seq.Generated >= request.MaxTokens ? EngineFinishReason.Length
            : scheduled.TokenCount >= ContextLength ? EngineFinishReason.ContextFull
            : null;
        seq.Output!.Writer.TryWrite(new GeneratedToken(token, logprob, top, reason));
        if (reason is { } r)
            Complete(seq, r, reported: true);
    }

    private void FinishEmbedding(EngineSequence seq)
    {
        var sum = seq.EmbeddingSum!;
        var result = new float[sum.Length];
        double norm = 0;
        for (int d = 0; d < sum.Length; d++)
        {
            double mean = sum[d] / seq.EmbeddedRows;
            result[d] = (float)mean;
            norm += mean * mean;
        }
        float inverse = norm > 0 ? (float)(1 / Math.Sqrt(norm)) : 0f;
        for (int d = 0; d < result.Length; d++)
            result[d] *= inverse;
        Release(seq);
        seq.Embedding!.TrySetResult(result);
    }

    /// <summary>Ends a sequence: frees its blocks now and closes its output (with a final item unless one was sent).</summary>
    private void Complete(EngineSequence seq, EngineFinishReason reason, bool reported = false)
    {
        Release(seq);
        if (seq.Embedding is { } embedding)
        {
            embedding.TrySetCanceled();
            return;
        }
        var writer = seq.Output!.Writer;
        if (!reported)
            writer.TryWrite(new GeneratedToken(-1, 0f, [], reason));
        writer.TryComplete();
    }

    private void Release(EngineSequence seq)
    {
        seq.Done = true;
        if (seq.Scheduled is { } scheduled)
        {
            _scheduler.Finish(scheduled);
            _live.Remove(scheduled.Id);
        }
    }

    private void FailAll(Exception e)
    {
        foreach (var seq in _live.Values.ToList())
        {
            Release(seq);
            if (seq.Embedding is { } embedding)
                embedding.TrySetException(e);
            else
                seq.Output!.Writer.TryComplete(e);
        }
        PublishMetrics();
    }

    private void CancelAll()
    {
        Admit();
        foreach (var seq in _live.Values.ToList())
            Complete(seq, EngineFinishReason.Cancelled);
        PublishMetrics();
    }

    private void PublishMetrics()
    {
        var metrics = new EngineMetrics
        {
            RunningSequences = _scheduler.RunningCount,
            WaitingSequences = _scheduler.WaitingCount,
            KvBlocksUsed = _blocks.UsedBlocks,
            KvBlocksTotal = _blocks.BlockCount,
            PrefixCacheQueries = _scheduler.PrefixCacheQueries,
            PrefixCacheHits = _scheduler.PrefixCacheHits,
            PromptTokens = _promptTokens,
            GeneratedTokens = _generatedTokens,
            Preemptions = _scheduler.Preemptions,
        };
        lock (_metricsGate)
            _metrics = metrics;
    }

    /// <summary>Stops the loop after its current step; every unfinished sequence ends with <see cref="EngineFinishReason.Cancelled"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        lock (_submitGate)
            _stopping = true;
        _wake.Set();
        await Task.Run(_loop.Join).ConfigureAwait(false);
        // Requests that slipped in after the loop's last look.
        while (_inbox.TryDequeue(out var seq))
            Complete(seq, EngineFinishReason.Cancelled);
        _cache.Dispose();
        _pool.Dispose();
        if (_ownsModel)
            _model.Dispose();
    }
}
