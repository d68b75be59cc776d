"""Seed 000's business-discovery workflow as a chain of jobs, each step queuing the next.

    discover-with-instagram -> analyze-reels -> scrape-instagram-videos -> analyze-video-content
    -> generate-competitor-report

The steps simulate the seed's services (no Serper, Instagram or Gemini calls here): each reports
its progress, and adds the next step with ``job.add_job``, created with its own completion.
Every step's data carries what the earlier steps found (``businessId`` and their results), so
the last job's result holds the whole chain, and each result names the next job (``next``).
The seed spreads the steps over five queues; here they alternate between two of the example
queues (video-processing: discovery, scraping, video analysis; report-generation: reel analysis,
the report), so each hand-over crosses queues but the stack stays three queues: adding a queue
is one block in template.yaml, and ``add_job`` takes any queue.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.errors import PermanentJobError
from shared.worker import JobContext

LIGHT = "report-generation"
VIDEO = "video-processing"


def _digest(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:10]


def _chain(job: JobContext, step: str, found: dict[str, Any]) -> dict[str, Any]:
    """The data the next step gets: what came before, plus this step's findings."""
    chain = list(job.data.get("chain") or [])
    chain.append({"step": step, "jobId": job.job_id, **found})
    return {"businessId": job.data["businessId"], "chain": chain}


def discover_with_instagram(job: JobContext) -> dict[str, Any]:
    """Business search -> competitor discovery -> Instagram detection -> profile creation."""
    name, location = job.data.get("businessName"), job.data.get("location")
    if not name or not location:
        raise PermanentJobError("data needs businessName and location")
    business_id = f"biz-{_digest(name, location)}"
    job.progress(30, "searching competitors")
    competitors = [{"name": f"{name} rival {i}", "username": f"rival_{i}_{_digest(name, i)[:4]}"} for i in (1, 2)]
    job.progress(70, "detecting Instagram profiles")
    profiles = [{"profileId": f"profile-{_digest(c['username'])}", "username": c["username"]} for c in competitors]
    data = {"businessId": business_id, "chain": [{"step": "discover-with-instagram", "jobId": job.job_id, "profiles": profiles}]}
    next_id = job.add_job(LIGHT, "analyze-reels", {**data, "profiles": profiles})  # video-processing -> report-generation
    job.progress(100, "profiles created; reel analysis queued")
    return {"businessId": business_id, "competitors": competitors, "profiles": profiles, "next": next_id}


def analyze_reels(job: JobContext) -> dict[str, Any]:
    """Profile discovery -> reel analysis -> top reel selection -> video queue trigger."""
    profiles = job.data.get("profiles") or []
    job.progress(50, f"analysing reels of {len(profiles)} profiles")
    top_reels = [{"reelId": f"reel-{_digest(p['profileId'], r)}", "profileId": p["profileId"], "views": 1000 * (3 - r)} for p in profiles for r in (1, 2)]
    data = _chain(job, "analyze-reels", {"topReels": [r["reelId"] for r in top_reels]})
    next_id = job.add_job(VIDEO, "scrape-instagram-videos", {**data, "topReels": top_reels})
    job.progress(100, "top reels selected; scraping queued")
    return {"topReels": top_reels, "next": next_id}


def scrape_instagram_videos(job: JobContext) -> dict[str, Any]:
    """Video download (simulated: each reel gets a storage path)."""
    reels = job.data.get("topReels") or []
    videos = []
    for i, reel in enumerate(reels, start=1):
        videos.append({"videoId": f"video-{_digest(reel['reelId'])}", "videoPath": f"s3://videos/{reel['reelId']}.mp4"})
        job.progress(round(100 * i / max(1, len(reels))), f"downloaded {i} of {len(reels)}")
    data = _chain(job, "scrape-instagram-videos", {"videos": [v["videoId"] for v in videos]})
    next_id = job.add_job(VIDEO, "analyze-video-content", {**data, "videos": videos})
    return {"videos": videos, "next": next_id}


def analyze_video_content(job: JobContext) -> dict[str, Any]:
    """Content analysis and AI processing (simulated: a score and tags per video)."""
    videos = job.data.get("videos") or []
    analysis = []
    for i, video in enumerate(videos, start=1):
        score = int(_digest(video["videoId"])[:2], 16) % 100
        analysis.append({"videoId": video["videoId"], "engagementScore": score, "tags": ["food", "nyc"] if score % 2 else ["menu"]})
        job.progress(round(100 * i / max(1, len(videos))), f"analysed {i} of {len(videos)}")
    data = _chain(job, "analyze-video-content", {"analysed": len(analysis)})
    next_id = job.add_job(LIGHT, "generate-competitor-report", {**data, "analysisData": analysis})
    return {"analysisData": analysis, "next": next_id}


def generate_competitor_report(job: JobContext) -> dict[str, Any]:
    """Report generation: the competitor report from every step's findings."""
    analysis = job.data.get("analysisData") or []
    job.progress(50, "writing the report")
    best = max(analysis, key=lambda a: a["engagementScore"], default=None)
    chain = _chain(job, "generate-competitor-report", {})["chain"]
    job.progress(100, "report ready")
    return {
        "businessId": job.data.get("businessId"),
        "videosAnalysed": len(analysis),
        "topVideo": best,
        "steps": [link["step"] for link in chain],
        "chain": chain,
    }
