namespace Kiln.Distributed;

/// <summary>
/// The communicators one rank uses under a <see cref="ParallelLayout"/>: its data-parallel group (same tp and pp),
/// tensor-parallel group (same dp and pp) and pipeline group (same dp and tp), each ordered by the other coordinate.
/// </summary>
public sealed class ParallelGroups : IDisposable
{
    private ParallelGroups(Communicator world, ParallelLayout layout, Communicator dp, Communicator tp, Communicator pp)
    {
        World = world;
        Layout = layout;
        (DpRank, TpRank, PpRank) = layout.Coordinates(world.Rank);
        DataParallel = dp;
        TensorParallel = tp;
        Pipeline = pp;
    }

    public Communicator World { get; }
    public ParallelLayout Layout { get; }
    public int DpRank { get; }
    public int TpRank { get; }
    public int PpRank { get; }
    public Communicator DataParallel { get; }
    public Communicator TensorParallel { get; }
    public Communicator Pipeline { get; }

    public bool IsFirstStage => PpRank == 0;
    public bool IsLastStage => PpRank == Layout.Pp - 1;

    /// <summary>Collective over <paramref name="world"/>: splits it into the three groups.</summary>
    public static ParallelGroups Create(Communicator world, ParallelLayout layout)
    {
        if (layout.Ranks != world.Size)
            throw new ArgumentException($"the layout has {layout.Ranks} ranks, the world {world.Size}");
        var (dp, tp, pp) = layout.Coordinates(world.Rank);
        // Colors: a group is identified by the coordinates its members share.
        var dpGroup = world.Split(pp * layout.Tp + tp, dp);
        var tpGroup = world.Split(pp * layout.Dp + dp, tp);
        var ppGroup = world.Split(dp * layout.Tp + tp, pp);
        return new ParallelGroups(world, layout, dpGroup, tpGroup, ppGroup);
    }

    public void Dispose()
    {
        DataParallel.Dispose();
        TensorParallel.Dispose();
        Pipeline.Dispose();
    }
}
