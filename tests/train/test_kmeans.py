import torch

from stepaudio.tokenizer.codebook import nearest
from stepaudio.train.kmeans import codebook_stats, train_kmeans


def blobs(k: int, per: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=g) * 10
    points = centers.repeat_interleave(per, dim=0) + 0.1 * torch.randn(k * per, dim, generator=g)
    return points, centers


def test_recovers_well_separated_clusters():
    points, centers = blobs(16, 50, 8)
    centroids = train_kmeans(points, 16, progress=False)
    # Each true centre has a learned centroid right next to it.
    _, dists = nearest(centers, centroids)
    assert dists.max() < 0.05
    stats = codebook_stats(points, centroids)
    assert stats.dead_codes == 0 and abs(stats.perplexity - 16) < 0.01


def test_deterministic_for_a_seed_and_different_across_seeds():
    noise = torch.randn(2000, 4, generator=torch.Generator().manual_seed(2))
    a = train_kmeans(noise, 8, seed=3, progress=False)
    b = train_kmeans(noise, 8, seed=3, progress=False)
    c = train_kmeans(noise, 8, seed=4, progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_dead_codes_on_skewed_data():
    g = torch.Generator().manual_seed(0)
    # 95 % of the points in one tight blob: naive seeding would leave codes empty.
    points = torch.cat([torch.randn(1900, 3, generator=g) * 0.01, torch.randn(100, 3, generator=g) * 5])
    centroids = train_kmeans(points, 64, progress=False)
    assert codebook_stats(points, centroids).dead_codes == 0


def test_nearest_matches_cdist():
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(300, 7, generator=g), torch.randn(20, 7, generator=g)
    codes, dists = nearest(x, c)
    ref = torch.cdist(x, c)
    assert torch.equal(codes, ref.argmin(dim=1))
    torch.testing.assert_close(dists, ref.min(dim=1).values ** 2, atol=1e-4, rtol=1e-4)
