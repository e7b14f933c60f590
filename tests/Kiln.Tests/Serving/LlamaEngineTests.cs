using Kiln.Inference.Sampling;
using Kiln.Models.Llama;
using Kiln.Serving;
using Kiln.Tensors;

namespace Kiln.Tests.Serving;

/// <summary>The engine end to end on random tiny models: batching, cancellation, prefix caching and preemption change no tokens.</summary>
public sealed class LlamaEngineTests : IDisposable
{
    private static readonly SamplerOptions Greedy = new() { Temperature = 0 };
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-engine-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Model(GgmlType type = GgmlType.Q4_0) =>
        new RandomLlama { WeightType = type, Dim = 64, Ffn = 96, Context = 256 }.Write(Path.Combine(_dir, $"{type}.gguf"));

    private static LlamaEngineOptions Options(int maxSeqs = 16, int batchTokens = 64, bool prefix = true, int blocks = 0) => new()
    {
        MaxSequences = maxSeqs,
        MaxBatchTokens = batchTokens,
        Threads = 2,
        PrefixCaching = prefix,
        KvCacheBlocks = blocks,
    };

    private static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        return [1, .. Enumerable.Range(0, length - 1).Select(_ => 3 + rng.Next(264))];
    }

    private static EngineRequest Request(int[] prompt, int maxTokens = 12) =>
        new() { Prompt = prompt, Sampling = Greedy, MaxTokens = maxTokens, IgnoreEndOfGeneration = true };

    private static async Task<(List<int> Tokens, EngineFinishReason? Reason)> Run(IInferenceEngine engine, EngineRequest request, CancellationToken ct = default)
    {
        var tokens = new List<int>();
        EngineFinishReason? reason = null;
        await foreach (var item in engine.GenerateAsync(request, ct))
        {
            if (item.Token >= 0)
                tokens.Add(item.Token);
            reason = item.FinishReason;
        }
        return (tokens, reason);
    }

    /// <summary>Each prompt run alone, one after another, on an engine without prefix caching.</summary>
    private static async Task<List<int>[]> Alone(string path, IReadOnlyList<int[]> prompts, int maxTokens)
    {
        await using var engine = LlamaEngine.Load(path, Options(prefix: false));
        var results = new List<int>[prompts.Count];
        for (int i = 0; i < prompts.Count; i++)
            results[i] = (await Run(engine, Request(prompts[i], maxTokens))).Tokens;
        return results;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.F32)]
    public async Task SixteenConcurrentGreedyRequestsGiveTheTokensEachGivesAlone(GgmlType type)
    {
        string path = Model(type);
        var prompts = Enumerable.Range(0, 16).Select(i => Prompt(i, 5 + i * 3)).ToArray();
        var alone = await Alone(path, prompts, 12);

        await using var engine = LlamaEngine.Load(path, Options());
        var together = await Task.WhenAll(prompts.Select(p => Task.Run(() => Run(engine, Request(p)))));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(alone[i], together[i].Tokens);
            Assert.Equal(EngineFinishReason.Length, together[i].Reason);
        }
        Assert.Equal(0, engine.GetMetrics().KvBlocksUsed);
        Assert.Equal(16 * 12, engine.GetMetrics().GeneratedTokens);
    }

    [Fact]
    public async Task CancellingAQuarterOfThirtyTwoStreamsFreesEveryBlockAndTheRestFinish()
    {
        string path = Model();
        var prompts = Enumerable.Range(0, 32).Select(i => Prompt(100 + i, 6 + i % 9)).ToArray();
        var alone = await Alone(path, prompts, 20);
        await using var engine = LlamaEngine.Load(path, Options(maxSeqs: 12, batchTokens: 48));

        async Task<(List<int> Tokens, EngineFinishReason? Reason)> Client(int i)
        {
            var request = Request(prompts[i], 20);
            switch (i % 8)
            {
                case 1: // token cancelled after three tokens; the loop is held at the fourth until the cancellation is in
                {
                    using var gate = new StepGate(freeSteps: 3);
                    request = request with { MaxTokens = 240, Constraint = gate };
                    using var cts = new CancellationTokenSource();
                    var tokens = new List<int>();
                    EngineFinishReason? reason = null;
                    await foreach (var item in engine.GenerateAsync(request, cts.Token))
                    {
                        if (item.Token >= 0) tokens.Add(item.Token);
                        reason = item.FinishReason;
                        if (tokens.Count == 3)
                        {
                            cts.Cancel();
                            gate.Open();
                        }
                    }
                    return (tokens, reason);
                }
                case 5: // the consumer walks away after two tokens (enumerator disposed)
                {
                    var tokens = new List<int>();
                    await foreach (var item in engine.GenerateAsync(request))
                    {
                        tokens.Add(item.Token);
                        if (tokens.Count == 2) break;
                    }
                    return (tokens, EngineFinishReason.Cancelled);
                }
                default:
                    return await Run(engine, request);
            }
        }

        var results = await Task.WhenAll(Enumerable.Range(0, 32).Select(i => Task.Run(() => Client(i))));
        for (int i = 0; i < 32; i++)
        {
            if (i % 8 is 1 or 5)
            {
                Assert.Equal(EngineFinishReason.Cancelled, results[i].Reason);
                Assert.True(results[i].Tokens.Count < 240);
                Assert.Equal(alone[i].Take(results[i].Tokens.Count), results[i].Tokens.Take(20));
            }
            else
            {
                Assert.Equal(EngineFinishReason.Length, results[i].Reason);
                Assert.Equal(alone[i], results[i].Tokens);
            }
        }
        var metrics = await Settled(engine);
        Assert.Equal(0, metrics.KvBlocksUsed);
        Assert.Equal(0, metrics.RunningSequences);
        Assert.Equal(0, metrics.WaitingSequences);
    }

    /// <summary>Metrics once the loop has handled the last cancellations (it frees blocks at its next step).</summary>
    private static async Task<EngineMetrics> Settled(LlamaEngine engine)
    {
        for (int i = 0; i < 200; i++)
        {
            var m = engine.GetMetrics();
            if (m.RunningSequences == 0 && m.WaitingSequences == 0)
                return m;
            await Task.Delay(10);
        }
        return engine.GetMetrics();
    }

    /// <summary>
    /// Holds the engine's loop inside a sequence's sampling step until the test lets it go on, so that what the other
    /// sequences are doing at that moment is decided by the test, not by how fast the machine is.
    /// </summary>
    private sealed class StepGate(int freeSteps = 0) : ITokenConstraint, IDisposable
    {
        private readonly SemaphoreSlim _permits = new(0);
        private volatile bool _open;
        private int _entered;

        public int Entered => Volatile.Read(ref _entered);
        public bool IsComplete => false;

        public void Mask(Span<float> logits)
        {
            if (Interlocked.Increment(ref _entered) <= freeSteps || _open)
                return;
            if (!_permits.Wait(TimeSpan.FromSeconds(60)))
                throw new TimeoutException("the test never released the gate");
        }

        public void Accept(int token) { }

        /// <summary>Lets the loop finish the step it is held in; it is held again at the next one.</summary>
        public void Step() => _permits.Release();

        public void Open()
        {
            _open = true;
            _permits.Release();
        }

        /// <summary>Lets the loop go whatever happened, so that a failed test does not also hold the engine's disposal.</summary>
        public void Dispose() => Open();

        /// <summary>Polls without holding a pool thread, which the requests being waited for may need.</summary>
        public static async Task WaitUntil(Func<bool> condition, string what)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!condition())
            {
                if (clock.Elapsed > TimeSpan.FromSeconds(30))
                    throw new TimeoutException($"the engine did not reach the expected state: {what}");
                await Task.Delay(1);
            }
        }
    }

    [Fact]
    public async Task CancellingWhileQueuedOrMidPrefillFreesTheBlocks()
    {
        string path = Model();
        {
            await using var engine = LlamaEngine.Load(path, Options(maxSeqs: 1, batchTokens: 16));
            // A sequence held at its first sampling step keeps the only seat; a second request waits behind it.
            using var gate = new StepGate();
            await using var running = engine.GenerateAsync(Request(Prompt(1, 10), 200) with { Constraint = gate }).GetAsyncEnumerator();
            var first = running.MoveNextAsync().AsTask();
            await StepGate.WaitUntil(() => gate.Entered == 1, "held at the first step");
            using var cts = new CancellationTokenSource();
            // Submission is synchronous (GenerateAsync submits before its first await), so the request is queued when
            // Run returns; the held step admitted the running sequence, which must not count as waiting any more.
            var queued = Run(engine, Request(Prompt(2, 10)), cts.Token);
            Assert.Equal(1, engine.GetMetrics().WaitingSequences);
            Assert.Equal(1, engine.GetMetrics().RunningSequences);
            cts.Cancel();
            gate.Open();
            var result = await queued;
            Assert.Equal(EngineFinishReason.Cancelled, result.Reason);
            Assert.Empty(result.Tokens);
            Assert.True(await first);
            await running.DisposeAsync();
            Assert.Equal(0, (await Settled(engine)).KvBlocksUsed);
        }
        {
            // Mid-prefill: a decoding sequence is held after each step. The step after a 200-token prompt is admitted
            // runs the decode and the prompt's first 15-token chunk; the prompt is cancelled there.
            await using var engine = LlamaEngine.Load(path, Options(maxSeqs: 2, batchTokens: 16));
            using var gate = new StepGate();
            await using var running = engine.GenerateAsync(Request(Prompt(1, 10), 200) with { Constraint = gate }).GetAsyncEnumerator();
            var first = running.MoveNextAsync().AsTask();
            await StepGate.WaitUntil(() => gate.Entered == 1, "held at the first step");
            using var cts = new CancellationTokenSource();
            var longPrompt = Run(engine, Request(Prompt(3, 200)), cts.Token); // queued on return, as above
            gate.Step();
            await StepGate.WaitUntil(() => gate.Entered == 2, "held at the second step");
            cts.Cancel();
            gate.Open();
            var result = await longPrompt;
            Assert.Equal(EngineFinishReason.Cancelled, result.Reason);
            Assert.Empty(result.Tokens);
            Assert.True(await first);
            await running.DisposeAsync();
            var metrics = await Settled(engine);
            Assert.Equal(0, metrics.KvBlocksUsed);
            Assert.Equal(0, metrics.RunningSequences);
        }
    }

    [Fact]
    public async Task ASecondRequestWithASharedLongPrefixHitsTheCacheAndGivesTheSameTokens()
    {
        string path = Model();
        int[] shared = Prompt(7, 120);
        int[] first = [.. shared, 40, 41, 42];
        int[] second = [.. shared, 50, 51];
        var alone = await Alone(path, [second], 10);

        await using var engine = LlamaEngine.Load(path, Options(batchTokens: 32));
        await Run(engine, Request(first, 10));
        var before = engine.GetMetrics();
        var result = await Run(engine, Request(second, 10));
        var after = engine.GetMetrics();
        Assert.Equal(alone[0], result.Tokens);
        Assert.Equal(second.Length, after.PrefixCacheQueries - before.PrefixCacheQueries);
        Assert.Equal(112, after.PrefixCacheHits - before.PrefixCacheHits); // the 7 full 16-token blocks of the shared 120
    }

    [Fact]
    public async Task PreemptionUnderATinyKvBudgetGivesTheSameGreedyTokens()
    {
        string path = Model();
        var prompts = Enumerable.Range(0, 8).Select(i => Prompt(200 + i, 10 + i)).ToArray();
        var alone = await Alone(path, prompts, 30);
        // 8 sequences of up to 47 tokens need 24 blocks; 8 blocks force preemptions.
        await using var engine = LlamaEngine.Load(path, Options(maxSeqs: 8, batchTokens: 32, blocks: 8));
        var together = await Task.WhenAll(prompts.Select(p => Task.Run(() => Run(engine, Request(p, 30)))));
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(alone[i], together[i].Tokens);
        var metrics = engine.GetMetrics();
        Assert.True(metrics.Preemptions > 0, "no preemption happened");
        Assert.Equal(0, metrics.KvBlocksUsed);
    }

    [Fact]
    public async Task RejectsPromptsLongerThanTheContextAndRequestsBeyondTheQueue()
    {
        string path = Model();
        await using var engine = LlamaEngine.Load(path, Options(maxSeqs: 1) with { MaxWaiting = 1 });
        var tooLong = await Assert.ThrowsAsync<EngineRejectedException>(() => Run(engine, Request(Prompt(1, 256))));
        Assert.Equal(EngineRejection.PromptTooLong, tooLong.Reason);

        // The running sequence is held at its second step so that it cannot finish and free the seat meanwhile.
        using var gate = new StepGate(freeSteps: 1);
        await using var running = engine.GenerateAsync(Request(Prompt(1, 10), 500) with { Constraint = gate }).GetAsyncEnumerator();
        Assert.True(await running.MoveNextAsync());
        await using var waiting = engine.GenerateAsync(Request(Prompt(2, 10))).GetAsyncEnumerator();
        var waitingFirst = waiting.MoveNextAsync();
        var full = await Assert.ThrowsAsync<EngineRejectedException>(() => Run(engine, Request(Prompt(3, 10))));
        Assert.Equal(EngineRejection.QueueFull, full.Reason);
        gate.Open();
        await running.DisposeAsync();
        Assert.True(await waitingFirst);
    }

    [Fact]
    public async Task SeededSamplingIsReproducibleAndLogprobsAreConsistent()
    {
        string path = Model();
        await using var engine = LlamaEngine.Load(path, Options());
        var request = new EngineRequest
        {
            Prompt = Prompt(9, 12),
            Sampling = new SamplerOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = 42 },
            MaxTokens = 16,
            TopLogprobs = 3,
            IgnoreEndOfGeneration = true,
        };
        var a = new List<GeneratedToken>();
        var b = new List<GeneratedToken>();
        await Task.WhenAll(
            Task.Run(async () => { await foreach (var t in engine.GenerateAsync(request)) a.Add(t); }),
            Task.Run(async () => { await foreach (var t in engine.GenerateAsync(request)) b.Add(t); }));
        Assert.Equal(a.Select(t => t.Token), b.Select(t => t.Token));
        var greedy = await Run(engine, request with { Sampling = Greedy });
        Assert.NotEqual(greedy.Tokens, a.Select(t => t.Token).ToList());
        foreach (var t in a)
        {
            Assert.Equal(3, t.TopLogprobs.Count);
            Assert.True(t.TopLogprobs[0].Logprob >= t.TopLogprobs[1].Logprob && t.TopLogprobs[1].Logprob >= t.TopLogprobs[2].Logprob);
            Assert.True(t.Logprob <= 0 && t.Logprob <= t.TopLogprobs[0].Logprob + 1e-6f);
            Assert.True(t.TopLogprobs.Sum(x => Math.Exp(x.Logprob)) <= 1 + 1e-5);
            int at = t.TopLogprobs.ToList().FindIndex(x => x.Token == t.Token);
            if (at >= 0)
                Assert.Equal(t.TopLogprobs[at].Logprob, t.Logprob);
        }
    }

    private sealed class OnlyToken(int allowed, int completeAfter = int.MaxValue) : ITokenConstraint
    {
        public int Accepted { get; private set; }
        public bool IsComplete => Accepted >= completeAfter;
        public void Mask(Span<float> logits)
        {
            for (int i = 0; i < logits.Length; i++)
                if (i != allowed) logits[i] = float.NegativeInfinity;
        }
        public void Accept(int token) => Accepted += token == allowed ? 1 : 1000;
    }

    [Fact]
    public async Task AConstraintDecidesWhatMayBeSampledAndEndOfGenerationEnds()
    {
        string path = Model();
        await using var engine = LlamaEngine.Load(path, Options());
        var constraint = new OnlyToken(77);
        var request = new EngineRequest { Prompt = Prompt(4, 8), Sampling = new SamplerOptions { Seed = 3 }, MaxTokens = 5, Constraint = constraint, TopLogprobs = 2 };
        var items = new List<GeneratedToken>();
        await foreach (var t in engine.GenerateAsync(request))
            items.Add(t);
        Assert.All(items, t => Assert.Equal(77, t.Token));
        Assert.All(items, t => Assert.Equal(0f, t.Logprob));
        Assert.Equal(5, constraint.Accepted);

        var complete = await Run(engine, new EngineRequest { Prompt = Prompt(4, 8), Constraint = new OnlyToken(77, completeAfter: 3), MaxTokens = 50, IgnoreEndOfGeneration = true });
        Assert.Equal([77, 77, 77], complete.Tokens);
        Assert.Equal(EngineFinishReason.EndOfGeneration, complete.Reason);

        var eos = await Run(engine, new EngineRequest { Prompt = Prompt(4, 8), Constraint = new OnlyToken(2), MaxTokens = 5 });
        Assert.Empty(eos.Tokens);
        Assert.Equal(EngineFinishReason.EndOfGeneration, eos.Reason);
    }

    [Fact]
    public async Task EmbeddingsAreTheNormalizedMeanOfTheFinalHiddenStates()
    {
        string path = Model(GgmlType.F32);
        await using var engine = LlamaEngine.Load(path, Options(batchTokens: 8));
        int[] tokens = Prompt(11, 20);
        float[] e = await engine.EmbedAsync(tokens);
        Assert.Equal(64, e.Length);
        Assert.Equal(1.0, Math.Sqrt(e.Sum(v => (double)v * v)), 1e-5);

        // Independently: the runner's hidden rows for the whole prompt in one chunk, averaged and normalized here.
        using var model = LlamaModel.Load(path);
        using var pool = new Kiln.Threading.WorkerPool(1);
        using var cache = new PagedKvCache(model.Config.BlockCount, model.Config.KvDim, 2, 16, KvCacheType.F16);
        var runner = new LlamaBatchRunner(model, cache, pool, 32, 32);
        var hidden = new float[tokens.Length * 64];
        runner.Run([new PagedChunk(0, tokens, 0, [0, 1], PagedOutput.Hidden)], default, hidden);
        var mean = new double[64];
        for (int t = 0; t < tokens.Length; t++)
            for (int d = 0; d < 64; d++)
                mean[d] += hidden[t * 64 + d] / (double)tokens.Length;
        double norm = Math.Sqrt(mean.Sum(v => v * v));
        for (int d = 0; d < 64; d++)
            Assert.Equal(mean[d] / norm, e[d], 1e-5);
        Assert.NotEqual(e, await engine.EmbedAsync(Prompt(12, 20)));
    }

    [Fact]
    public async Task DisposingCancelsWhatIsStillRunning()
    {
        string path = Model();
        var engine = LlamaEngine.Load(path, Options());
        var run = Task.Run(() => Run(engine, Request(Prompt(1, 10), 100_000)));
        while (engine.GetMetrics().GeneratedTokens == 0)
            await Task.Delay(1);
        await engine.DisposeAsync();
        Assert.Equal(EngineFinishReason.Cancelled, (await run).Reason);
        var late = await Assert.ThrowsAsync<EngineRejectedException>(() => Run(engine, Request(Prompt(1, 10))));
        Assert.Equal(EngineRejection.ShuttingDown, late.Reason);
    }

    [Fact]
    public void OptionsOutOfRangeAreRefusedByName()
    {
        Assert.Equal("MaxWaiting", Assert.Throws<ArgumentOutOfRangeException>(() => new LlamaEngineOptions { MaxWaiting = 0 }.Validate()).ParamName);
        Assert.Equal("MaxSequences", Assert.Throws<ArgumentOutOfRangeException>(() => new LlamaEngineOptions { MaxSequences = 0 }.Validate()).ParamName);
        Assert.Equal("KvCacheMegabytes", Assert.Throws<ArgumentOutOfRangeException>(() => new LlamaEngineOptions { KvCacheMegabytes = -1 }.Validate()).ParamName);
        new LlamaEngineOptions().Validate();
    }

    [Fact]
    public async Task TheContextIsCappedByTheBlockPool()
    {
        await using var engine = LlamaEngine.Load(Model(), Options(blocks: 3));
        Assert.Equal(48, engine.ContextLength);
        var tooLong = await Assert.ThrowsAsync<EngineRejectedException>(() => Run(engine, Request(Prompt(1, 48))));
        Assert.Equal(EngineRejection.PromptTooLong, tooLong.Reason);
        var full = await Run(engine, Request(Prompt(1, 40), 100));
        Assert.Equal(EngineFinishReason.ContextFull, full.Reason);
        Assert.Equal(8, full.Tokens.Count);
    }
}
