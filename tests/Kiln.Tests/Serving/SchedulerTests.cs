using Kiln.Models.Llama;
using Kiln.Serving;

namespace Kiln.Tests.Serving;

/// <summary>The scheduling policy on its own: no model, only the plan each step would run.</summary>
public sealed class SchedulerTests
{
    private static int[] Prompt(int length, int seed = 0) => Enumerable.Range(0, length).Select(i => 10 + (i * 7 + seed * 131) % 97).ToArray();

    /// <summary>Runs the step as if the model had produced <paramref name="next"/> for every sequence that wanted logits.</summary>
    private static void Complete(Scheduler s, SchedulerStep step, int next = 5)
    {
        s.Commit(step);
        foreach (var c in step.Chunks)
        {
            if (c.Output == PagedOutput.Logits)
                s.Find(c.SequenceId)!.Append(next);
        }
    }

    [Fact]
    public void DecodesOneTokenPerRunningSequenceAndChunksPromptsWithinTheBudget()
    {
        var s = new Scheduler(new KvBlockPool(64, 4), new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 10 });
        var a = s.Add(Prompt(6));
        var b = s.Add(Prompt(7, 1));

        var step = s.Schedule();
        Assert.Equal([(a.Id, 0, 6), (b.Id, 0, 4)], step.Chunks.Select(c => (c.SequenceId, c.StartPosition, c.Tokens.Length)));
        Assert.Equal([PagedOutput.Logits, PagedOutput.None], step.Chunks.Select(c => c.Output));
        Assert.Equal(10, step.TokenCount);
        Complete(s, step);

        // a decodes one token, b finishes its prompt.
        step = s.Schedule();
        Assert.Equal([(a.Id, 6, 1), (b.Id, 4, 3)], step.Chunks.Select(c => (c.SequenceId, c.StartPosition, c.Tokens.Length)));
        Assert.Equal(5, step.Chunks[0].Tokens[0]);
        Assert.Equal(b.Tokens.Skip(4).Take(3), step.Chunks[1].Tokens);
        Assert.All(step.Chunks, c => Assert.Equal(PagedOutput.Logits, c.Output));
        Complete(s, step);
        Assert.Equal(8, a.TokenCount);
        Assert.Equal(2, a.Blocks.Count);
    }

    [Fact]
    public void ALongPromptIsChunkedWhileDecodesContinueEveryStep()
    {
        var s = new Scheduler(new KvBlockPool(64, 4), new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 8, MaxPrefillTokens = 0 });
        var a = s.Add(Prompt(3));
        var b = s.Add(Prompt(3, 1));
        Complete(s, s.Schedule());
        var longOne = s.Add(Prompt(40, 2));
        int prefilled = 0;
        for (int i = 0; prefilled < 40; i++)
        {
            var step = s.Schedule();
            Assert.True(step.TokenCount <= 8);
            // Both decodes are in every step, ahead of the prompt chunk.
            Assert.Equal(a.Id, step.Chunks[0].SequenceId);
            Assert.Equal(b.Id, step.Chunks[1].SequenceId);
            Assert.Single(step.Chunks[0].Tokens);
            var chunk = step.Chunks.Single(c => c.SequenceId == longOne.Id);
            Assert.Equal(prefilled, chunk.StartPosition);
            Assert.Equal(Math.Min(6, 40 - prefilled), chunk.Tokens.Length);
            prefilled += Math.Min(6, 40 - prefilled);
            Assert.Equal(prefilled == 40 ? PagedOutput.Logits : PagedOutput.None, chunk.Output);
            Complete(s, step);
            if (chunk.Output == PagedOutput.Logits)
                break;
            Assert.True(i < 10);
        }
        Assert.Equal(41, longOne.TokenCount);
    }

    [Fact]
    public void WhileSequencesDecodePromptTokensPerStepAreCappedFirstComeFirstServed()
    {
        var s = new Scheduler(new KvBlockPool(64, 4), new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 100, MaxPrefillTokens = 5 });
        var a = s.Add(Prompt(3));
        var b = s.Add(Prompt(3, 1));
        Complete(s, s.Schedule());
        var first = s.Add(Prompt(7, 2));
        var second = s.Add(Prompt(4, 3));

        // Each step: the two decodes, then at most 5 prompt tokens — the older prompt's rest before the newer one.
        (long Id, int Start, int Length)[][] expected =
        [
            [(a.Id, 3, 1), (b.Id, 3, 1), (first.Id, 0, 5)],
            [(a.Id, 4, 1), (b.Id, 4, 1), (first.Id, 5, 2), (second.Id, 0, 3)],
            [(a.Id, 5, 1), (b.Id, 5, 1), (first.Id, 7, 1), (second.Id, 3, 1)],
        ];
        foreach (var plan in expected)
        {
            var step = s.Schedule();
            Assert.Equal(plan, step.Chunks.Select(c => (c.SequenceId, c.StartPosition, c.Tokens.Length)));
            Complete(s, step);
        }
        Assert.Equal(9, first.TokenCount); // its first token came in step 2, its second in step 3
        Assert.Equal(5, second.TokenCount);
    }

    [Fact]
    public void WithNothingDecodingPromptsTakeTheWholeBatchBudget()
    {
        var s = new Scheduler(new KvBlockPool(64, 4), new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 30, MaxPrefillTokens = 5 });
        var a = s.Add(Prompt(20));
        var b = s.Add(Prompt(20, 1));
        var step = s.Schedule();
        Assert.Equal([(a.Id, 0, 20), (b.Id, 0, 10)], step.Chunks.Select(c => (c.SequenceId, c.StartPosition, c.Tokens.Length)));
        Complete(s, step);

        // a now decodes, so b's remaining 10 prompt tokens go 5 per step.
        step = s.Schedule();
        Assert.Equal([(a.Id, 20, 1), (b.Id, 10, 5)], step.Chunks.Select(c => (c.SequenceId, c.StartPosition, c.Tokens.Length)));
    }

    [Fact]
    public void AZeroPrefillCapLeavesOnlyTheBatchBudget()
    {
        var s = new Scheduler(new KvBlockPool(64, 4), new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 30, MaxPrefillTokens = 0 });
        var a = s.Add(Prompt(3));
        Complete(s, s.Schedule());
        var b = s.Add(Prompt(40, 1));
        var step = s.Schedule();
        Assert.Equal([(a.Id, 3, 1), (b.Id, 0, 29)], step.Chunks.Select(c => (c.SequenceId, c.StartPosition, c.Tokens.Length)));
    }

    [Fact]
    public void ANegativePrefillCapIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Scheduler(new KvBlockPool(4, 4), new SchedulerOptions { MaxPrefillTokens = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LlamaEngineOptions { MaxPrefillTokens = -1 }.Validate());
    }

    [Fact]
    public void AWaitingSequenceIsNotCountedAsAPrefixQueryUntilItIsAdmitted()
    {
        var pool = new KvBlockPool(3, 4);
        var s = new Scheduler(pool, new SchedulerOptions { MaxBatchTokens = 100 });
        var first = s.Add(Prompt(9));
        Complete(s, s.Schedule());
        var second = s.Add(Prompt(9)); // same prompt, but no block is free for its last token yet
        for (int i = 0; i < 3; i++)
            Assert.Equal([first.Id], s.Schedule().Chunks.Select(c => c.SequenceId).Distinct());
        Assert.Equal(9, s.PrefixCacheQueries);
        Assert.Equal(SequenceStatus.Waiting, second.Status);
        Assert.Equal(0, second.Blocks.Count);
        s.Finish(first);
        var chunk = Assert.Single(s.Schedule().Chunks);
        Assert.Equal((second.Id, 8), (chunk.SequenceId, chunk.StartPosition));
        Assert.Equal(18, s.PrefixCacheQueries);
        Assert.Equal(8, s.PrefixCacheHits);
    }

    [Fact]
    public void AdmitsFirstComeFirstServedUpToMaxSequences()
    {
        var s = new Scheduler(new KvBlockPool(64, 4), new SchedulerOptions { MaxSequences = 2, MaxBatchTokens = 100 });
        var seqs = Enumerable.Range(0, 4).Select(i => s.Add(Prompt(3, i))).ToArray();
        var step = s.Schedule();
        Assert.Equal([seqs[0].Id, seqs[1].Id], step.Chunks.Select(c => c.SequenceId));
        Complete(s, step);
        Assert.Equal(2, s.WaitingCount);
        s.Finish(seqs[0]);
        step = s.Schedule();
        Assert.Equal([seqs[1].Id, seqs[2].Id], step.Chunks.Select(c => c.SequenceId));
        Assert.Equal(SequenceStatus.Waiting, seqs[3].Status);
    }

    [Fact]
    public void AWaitingSequenceThatDoesNotFitBlocksThoseBehindIt()
    {
        // 4 blocks of 4: the first sequence takes 3, the second needs 2, the third (1 block) must not overtake it.
        var s = new Scheduler(new KvBlockPool(4, 4), new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 100 });
        var a = s.Add(Prompt(12));
        var b = s.Add(Prompt(8, 1));
        var c = s.Add(Prompt(2, 2));
        var step = s.Schedule();
        Assert.Equal([a.Id], step.Chunks.Select(x => x.SequenceId));
        Assert.Equal([b.Id, c.Id], s.Waiting.Select(x => x.Id));
    }

    [Fact]
    public void RunningOutOfBlocksPreemptsTheYoungestAndRecomputesItLater()
    {
        // Two sequences of 4 tokens in 3 blocks of 4: the first to need a second block evicts the younger one.
        var pool = new KvBlockPool(3, 4);
        var s = new Scheduler(pool, new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 100, PrefixCaching = false });
        var old = s.Add(Prompt(4));
        var young = s.Add(Prompt(4, 1));
        Complete(s, s.Schedule());
        Assert.Equal(2, pool.UsedBlocks);

        var step = s.Schedule(); // both need a second block; only one is free
        Assert.Equal([old.Id], step.Chunks.Select(c => c.SequenceId));
        Assert.Equal([young.Id], step.Preempted);
        Assert.Equal(SequenceStatus.Waiting, young.Status);
        Assert.Equal(0, young.ComputedTokens);
        Assert.Equal(5, young.TokenCount); // its generated token is kept and will be recomputed
        Assert.Equal(young, s.Waiting.First());
        Assert.Equal(2, pool.UsedBlocks);
        Assert.Equal(1, s.Preemptions);
        Complete(s, step);

        s.Finish(old);
        step = s.Schedule();
        var chunk = Assert.Single(step.Chunks);
        Assert.Equal((young.Id, 0, 5, PagedOutput.Logits), (chunk.SequenceId, chunk.StartPosition, chunk.Tokens.Length, chunk.Output));
        Assert.Equal(young.Tokens, chunk.Tokens);
    }

    [Fact]
    public void ASharedPromptPrefixReusesTheCachedBlocks()
    {
        var pool = new KvBlockPool(16, 4);
        var s = new Scheduler(pool, new SchedulerOptions { MaxSequences = 8, MaxBatchTokens = 100 });
        int[] shared = Prompt(10);
        var first = s.Add(shared);
        Complete(s, s.Schedule());
        s.Finish(first);
        Assert.Equal(2, pool.CachedBlocks); // two full blocks of the 10-token prompt (8 tokens)

        var second = s.Add([.. shared[..9], 99, 98]);
        var step = s.Schedule();
        var chunk = Assert.Single(step.Chunks);
        Assert.Equal(8, chunk.StartPosition);
        Assert.Equal([shared[8], 99, 98], chunk.Tokens);
        Assert.Equal(11, s.PrefixCacheQueries - 10);
        Assert.Equal(8, s.PrefixCacheHits);

        // A different first block shares nothing, even with an equal second block.
        var third = s.Add([.. Prompt(4, 5), .. shared[4..8], 1]);
        step = s.Schedule();
        Assert.Equal(0, step.Chunks.Single(c => c.SequenceId == third.Id).StartPosition);
    }

    [Fact]
    public void TheSamePromptSentTwiceAtOnceIsComputedOnceAndShared()
    {
        var pool = new KvBlockPool(32, 4);
        var s = new Scheduler(pool, new SchedulerOptions { MaxBatchTokens = 8 });
        int[] prompt = Prompt(18);
        var first = s.Add(prompt);
        var second = s.Add(prompt);
        var prefilled = new List<int>();
        for (int step = 0; step < 6; step++)
        {
            var plan = s.Schedule();
            prefilled.AddRange(plan.Chunks.Where(c => c.SequenceId == second.Id && c.StartPosition < 18).Select(c => c.Tokens.Length));
            Complete(s, plan);
        }
        // The first computes 18 tokens in chunks of 8; the second waits for them and computes only its last 2.
        Assert.Equal([2], prefilled);
        Assert.Equal(16, s.PrefixCacheHits);
        Assert.Equal(first.Blocks.Blocks[..4].ToArray(), second.Blocks.Blocks[..4].ToArray());
        Assert.Equal(2, pool.RefCount(first.Blocks[0]));
    }

    [Fact]
    public void AFullyCachedPromptStillComputesItsLastToken()
    {
        var pool = new KvBlockPool(16, 4);
        var s = new Scheduler(pool, new SchedulerOptions());
        int[] prompt = Prompt(8);
        var first = s.Add(prompt);
        Complete(s, s.Schedule());
        s.Finish(first);
        s.Add(prompt);
        var chunk = Assert.Single(s.Schedule().Chunks);
        Assert.Equal((4, 4), (chunk.StartPosition, chunk.Tokens.Length));
    }

    [Fact]
    public void FinishingFreesBlocksWhetherWaitingMidPrefillOrDecoding()
    {
        var pool = new KvBlockPool(32, 4);
        var s = new Scheduler(pool, new SchedulerOptions { MaxSequences = 2, MaxBatchTokens = 6, PrefixCaching = false });
        var decoding = s.Add(Prompt(3));
        Complete(s, s.Schedule());
        var prefilling = s.Add(Prompt(20, 1));
        var queued = s.Add(Prompt(5, 2));
        Complete(s, s.Schedule());
        Assert.Equal(SequenceStatus.Running, prefilling.Status);
        Assert.False(prefilling.IsCaughtUp);
        Assert.Equal(SequenceStatus.Waiting, queued.Status);
        s.Finish(prefilling);
        s.Finish(queued);
        s.Finish(decoding);
        Assert.Equal(0, pool.UsedBlocks);
        Assert.True(s.Schedule().IsEmpty);
    }

    [Fact]
    public void ChunksAddressTheirPositionsThroughTheBlockTable()
    {
        var s = new Scheduler(new KvBlockPool(8, 4), new SchedulerOptions());
        var seq = s.Add(Prompt(6));
        var chunk = Assert.Single(s.Schedule().Chunks);
        Assert.Equal(seq.Blocks.Blocks.ToArray(), chunk.BlockTable);
        Assert.Equal(chunk.BlockTable[1] * 4 + 1, chunk.Slot(5, 4));
    }
}
