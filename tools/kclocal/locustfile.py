"""Load profile for the kc-price HTTP API: mostly single-house predictions, some small batches and lookups.

Local: `make load`. Deployed: `locust -f tools/kclocal/locustfile.py --host https://<api id>.execute-api...`.
"""

import random

from locust import HttpUser, constant, task

from kclocal.events import EXAMPLE_HOUSE

HOUSE_IDS = ["7129300520", "6414100192", "5631500400", "2487200875", "1954400510", "7237550310"]


def house() -> dict:
    size = random.randrange(700, 4000, 10)
    return {
        **EXAMPLE_HOUSE,
        "sqft_living": size,
        "sqft_above": size,
        "grade": random.randint(5, 10),
        "lat": round(random.uniform(47.3, 47.75), 4),
        "long": round(random.uniform(-122.4, -121.9), 3),
    }


class ApiUser(HttpUser):
    wait_time = constant(0)

    @task(8)
    def predict_one(self):
        self.client.post("/predict", json={"houses": [house()]}, name="POST /predict (1)")

    @task(2)
    def predict_batch(self):
        self.client.post("/predict", json={"houses": [house() for _ in range(20)]}, name="POST /predict (20)")

    @task(2)
    def lookup(self):
        self.client.get(f"/houses/{random.choice(HOUSE_IDS)}/price", name="GET /houses/{id}/price")

    @task(1)
    def health(self):
        self.client.get("/health", name="GET /health")
