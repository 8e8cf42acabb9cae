"""The client of RunPod's "Build a custom worker from scratch" tutorial, Step 9, for the tests.

``process_image`` below is the tutorial's code as it is, with one change: its base URL,
``https://api.runpod.ai``, is ``{BASE_URL}`` (the tests point ``BASE_URL`` at the local endpoint,
and fill in ``API_KEY`` and ``ENDPOINT_ID`` as the tutorial tells its reader to).
``tests/test_server_clients.py`` checks that nothing else differs from the tutorial's text.
The tutorial's example call (an Unsplash URL) and its result handling are left out.
"""

import requests
import json
import time
import base64
from PIL import Image
from io import BytesIO

BASE_URL = "https://api.runpod.ai"
API_KEY = "YOUR_API_KEY"
ENDPOINT_ID = "YOUR_ENDPOINT_ID"

def process_image(image_path=None, image_url=None, operations=None, output=None):
    url = f"{BASE_URL}/v2/{ENDPOINT_ID}/run"
    
    if operations is None:
        operations = [
            {
                "type": "resize",
                "params": {
                    "width": 800,
                    "maintain_aspect": True
                }
            }
        ]
    
    if output is None:
        output = {
            "format": "JPEG",
            "quality": 85
        }
    
    # Prepare payload
    payload = {
        "input": {
            "image": {},
            "operations": operations,
            "output": output
        }
    }
    
    # Add image source (file or URL)
    if image_path:
        with open(image_path, "rb") as f:
            img_base64 = base64.b64encode(f.read()).decode('utf-8')
            payload["input"]["image"]["base64"] = img_base64
    elif image_url:
        payload["input"]["image"]["url"] = image_url
    else:
        raise ValueError("Either image_path or image_url must be provided")
    
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {API_KEY}"
    }
    
    # Submit job
    response = requests.post(url, headers=headers, json=payload)
    response_json = response.json()
    
    job_id = response_json.get("id")
    status_url = f"{BASE_URL}/v2/{ENDPOINT_ID}/status/{job_id}"
    
    # Poll for job completion
    while True:
        status_response = requests.get(status_url, headers=headers)
        status_data = status_response.json()
        
        if status_data.get("status") == "COMPLETED":
            return status_data.get("output")
        elif status_data.get("status") == "FAILED":
            return {"error": "Job failed", "details": status_data}
        
        time.sleep(1)
